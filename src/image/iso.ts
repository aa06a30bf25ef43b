// Bootable ISO around a UKI, UEFI only: a small FAT El Torito image holds GRUB as the removable-media
// loader, GRUB finds the ISO9660 volume by a marker file unique to this image and chainloads the
// UKI from it. xorriso makes the same image bootable as a CD (El Torito) and as a disk (GPT).
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted } from './copy.js';
import { archTools, COMMON_TOOLS, runTool, type Arch } from './tools.js';

export interface AssembleIsoOptions {
  arch: Arch;
  ukiPath: string;
  outPath: string;
  workDir: string;
  /** ISO9660 volume id; also names the marker file, so it must be unique per image. */
  volumeId: string;
  signal?: AbortSignal;
}

/** Paths inside the ISO9660 tree. */
export const ISO_PATHS = {
  uki: '/EFI/Linux/uki.efi',
  markerDir: '/EFI/uki-on-demand',
  efiImage: '/EFI/uki-on-demand/efiboot.img',
} as const;

// Only what the embedded script needs: filesystems and partition maps to find the marker,
// `search`, and `chainloader` + `boot`. No `normal`: the script runs in the rescue parser.
const GRUB_MODULES = ['fat', 'iso9660', 'part_gpt', 'part_msdos', 'search', 'search_fs_file', 'chain', 'boot'];

// Fixed timestamps make identical inputs give identical images (xorriso and mtools both honour it).
const SOURCE_DATE_EPOCH = '946684800'; // 2000-01-01T00:00:00Z

const MAX_VOLUME_ID = 32;

/** ISO9660 volume ids are d-characters (A-Z, 0-9, _), at most 32 of them. */
export function isoVolumeId(volumeId: string): string {
  const id = volumeId.toUpperCase().replace(/[^A-Z0-9_]/g, '_').slice(0, MAX_VOLUME_ID);
  if (!/^[A-Z0-9_]+$/.test(id) || /^_+$/.test(id)) {
    throw new Error(`volume id ${JSON.stringify(volumeId)} has no usable characters (A-Z, 0-9, _)`);
  }
  return id;
}

export function markerPath(volumeId: string): string {
  return `${ISO_PATHS.markerDir}/${isoVolumeId(volumeId)}`;
}

/** The script embedded in GRUB's image: no menu, no timeout, no file to read before chainloading. */
export function grubScript(volumeId: string): string {
  return [
    `search --no-floppy --set=root --file ${markerPath(volumeId)}`,
    `chainloader ${ISO_PATHS.uki}`,
    'boot',
    '',
  ].join('\n');
}

const toolEnv = { SOURCE_DATE_EPOCH };

/** Builds GRUB for `arch` with the embedded script, as a standalone EFI program. */
export async function buildGrubEfi(arch: Arch, volumeId: string, dir: string, signal?: AbortSignal): Promise<string> {
  const tools = archTools(arch);
  const cfg = join(dir, 'grub-embedded.cfg');
  const efi = join(dir, tools.efiBootName);
  await writeFile(cfg, grubScript(volumeId));
  await runTool(
    COMMON_TOOLS.grubMkimage,
    ['-O', tools.grubFormat, '-d', tools.grubModuleDir, '-p', '/EFI/BOOT', '-c', cfg, '-o', efi, ...GRUB_MODULES],
    { signal, env: toolEnv },
  );
  return efi;
}

/** A FAT image just large enough for \EFI\BOOT\<loader>: the El Torito EFI boot image and ESP. */
export async function buildEfiBootImage(arch: Arch, loaderPath: string, outPath: string, signal?: AbortSignal): Promise<void> {
  const { size } = await stat(loaderPath);
  // FAT12 with 1 KiB clusters: room for the loader plus FATs, root directory and two directories.
  const sectors = Math.ceil((size + 64 * 1024) / (64 * 1024)) * 128;
  await rm(outPath, { force: true });
  const image = ['-i', outPath];
  await runTool(COMMON_TOOLS.mformat, ['-C', ...image, '-T', String(sectors), '-h', '2', '-s', '32', '-N', '0', '-v', 'UKIBOOT', '::'], { signal, env: toolEnv });
  await runTool(COMMON_TOOLS.mmd, [...image, '::/EFI', '::/EFI/BOOT'], { signal, env: toolEnv });
  await runTool(COMMON_TOOLS.mcopy, [...image, loaderPath, `::/EFI/BOOT/${archTools(arch).efiBootName}`], { signal, env: toolEnv });
}

export async function assembleIso(opts: AssembleIsoOptions): Promise<void> {
  throwIfAborted(opts.signal);
  const volumeId = isoVolumeId(opts.volumeId);
  await mkdir(opts.workDir, { recursive: true });
  const dir = await mkdtemp(join(opts.workDir, 'iso-'));
  try {
    const loader = await buildGrubEfi(opts.arch, volumeId, dir, opts.signal);
    const efiImage = join(dir, 'efiboot.img');
    await buildEfiBootImage(opts.arch, loader, efiImage, opts.signal);
    const marker = join(dir, 'marker');
    await writeFile(marker, `${volumeId}\n`);
    throwIfAborted(opts.signal);
    await rm(opts.outPath, { force: true });
    await runTool(
      COMMON_TOOLS.xorriso,
      [
        // Syncing every few MiB to a file that is fsynced at publish only slows the build down.
        '-stdio_sync', 'off',
        '-as', 'mkisofs',
        '-quiet',
        '-iso-level', '3',
        '-R',
        '-V', volumeId,
        '-graft-points',
        '-e', ISO_PATHS.efiImage,
        '-no-emul-boot',
        // The same FAT image doubles as the EFI system partition when the ISO is a disk.
        '-efi-boot-part', '--efi-boot-image',
        '-o', opts.outPath,
        `${ISO_PATHS.efiImage}=${efiImage}`,
        `${markerPath(volumeId)}=${marker}`,
        `${ISO_PATHS.uki}=${opts.ukiPath}`,
      ],
      { signal: opts.signal, env: toolEnv },
    );
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
