// Bootable ISO around a UKI, UEFI only: a small FAT El Torito image holds GRUB as the removable-media
// loader, GRUB finds the ISO9660 volume by a marker file unique to this image and chainloads the
// UKI from it. xorriso makes the same image bootable as a CD (El Torito) and as a disk (GPT).
// xorriso moves data in 2 KiB steps (about 5x slower than a plain copy), so by default it lays out
// the image around a one-block placeholder and the UKI is copied in afterwards (see iso-splice.ts).
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestFile, throwIfAborted } from './copy.js';
import { IsoLayoutError, spliceFile } from './iso-splice.js';
import { archTools, COMMON_TOOLS, runTool, type Arch } from './tools.js';

export interface AssembleIsoOptions {
  arch: Arch;
  ukiPath: string;
  outPath: string;
  workDir: string;
  /** ISO9660 volume id; also names the marker file, so it must be unique per image. */
  volumeId: string;
  signal?: AbortSignal;
  /**
   * 'splice' (default): xorriso lays out the image around a placeholder, the UKI is copied in;
   * falls back to 'xorriso' if the template is not as expected. 'xorriso': xorriso copies the UKI.
   */
  method?: 'splice' | 'xorriso';
  /** Called when 'splice' had to fall back to 'xorriso', with the reason. */
  onFallback?: (reason: Error) => void;
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

// Recognisable and unlike any real UKI: the splice step finds the placeholder's extent by content.
const PLACEHOLDER = Buffer.from('uki-on-demand placeholder for the UKI, replaced after xorriso has run\n'.repeat(29).slice(0, 2048));

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

/** Builds GRUB for `arch` with the embedded script, as the standalone EFI program `efiPath`. */
export async function buildGrubEfi(arch: Arch, volumeId: string, efiPath: string, scratchDir: string, signal?: AbortSignal): Promise<void> {
  const tools = archTools(arch);
  const cfg = join(scratchDir, `grub-embedded-${arch}.cfg`);
  await writeFile(cfg, grubScript(volumeId));
  await runTool(
    COMMON_TOOLS.grubMkimage,
    ['-O', tools.grubFormat, '-d', tools.grubModuleDir, '-p', '/EFI/BOOT', '-c', cfg, '-o', efiPath, ...GRUB_MODULES],
    { signal, env: toolEnv },
  );
}

// 1 MiB of FAT12: GRUB with these modules is 300-370 KiB, so there is room for more modules.
const EFI_IMAGE_SECTORS = 2048;

/**
 * The El Torito EFI boot image, which is also the EFI system partition when the ISO is a disk:
 * a FAT image holding \EFI\BOOT\<loader>. Formatting runs while GRUB is being built.
 */
export async function buildEfiBootImage(arch: Arch, volumeId: string, dir: string, outPath: string, signal?: AbortSignal): Promise<void> {
  const tree = join(dir, 'esp');
  await rm(outPath, { force: true });
  const image = ['-i', outPath];
  const bootDir = join(tree, 'EFI', 'BOOT');
  await mkdir(bootDir, { recursive: true });
  await Promise.all([
    buildGrubEfi(arch, volumeId, join(bootDir, archTools(arch).efiBootName), dir, signal),
    runTool(COMMON_TOOLS.mformat, ['-C', ...image, '-T', String(EFI_IMAGE_SECTORS), '-h', '2', '-s', '32', '-N', '0', '-v', 'UKIBOOT', '::'], { signal, env: toolEnv }),
  ]);
  await runTool(COMMON_TOOLS.mcopy, ['-s', ...image, join(tree, 'EFI'), '::/'], { signal, env: toolEnv });
}

/**
 * An ISO made up to the point where only the UKI is missing: GRUB, the FAT image, the marker and,
 * for the splice method, xorriso's template. Lets the caller build it while the UKI is written.
 */
export interface PreparedIso {
  /** Writes the ISO around `ukiPath`; may be called once. */
  finish(ukiPath: string, outPath: string, options?: { signal?: AbortSignal; digest?: boolean }): Promise<WrittenIso>;
  /** Removes the work files; safe to call more than once. */
  dispose(): Promise<void>;
}

export interface WrittenIso {
  bytes: number;
  sha256?: string;
}

export async function prepareIso(opts: Omit<AssembleIsoOptions, 'ukiPath' | 'outPath'>): Promise<PreparedIso> {
  throwIfAborted(opts.signal);
  const volumeId = isoVolumeId(opts.volumeId);
  await mkdir(opts.workDir, { recursive: true });
  const dir = await mkdtemp(join(opts.workDir, 'iso-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    const efiImage = join(dir, 'efiboot.img');
    await buildEfiBootImage(opts.arch, volumeId, dir, efiImage, opts.signal);
    const marker = join(dir, 'marker');
    await writeFile(marker, `${volumeId}\n`);
    const files = { volumeId, efiImage, marker };
    let template: Buffer | null = null;
    if ((opts.method ?? 'splice') === 'splice') {
      const placeholder = join(dir, 'placeholder');
      const templatePath = join(dir, 'template.iso');
      await writeFile(placeholder, PLACEHOLDER);
      await runXorriso({ ...files, uki: placeholder, outPath: templatePath, signal: opts.signal });
      template = await readFile(templatePath);
    }
    return {
      dispose,
      async finish(ukiPath, outPath, options = {}) {
        const signal = options.signal ?? opts.signal;
        throwIfAborted(signal);
        await rm(outPath, { force: true });
        try {
          if (template !== null) {
            try {
              return await spliceFile(template, PLACEHOLDER, ukiPath, outPath, { signal, digest: options.digest });
            } catch (err) {
              if (!(err instanceof IsoLayoutError)) throw err;
              opts.onFallback?.(err);
              await rm(outPath, { force: true });
            }
          }
          await runXorriso({ ...files, uki: ukiPath, outPath, signal });
          return options.digest ? await digestFile(outPath) : { bytes: (await stat(outPath)).size };
        } catch (err) {
          await rm(outPath, { force: true });
          throw err;
        }
      },
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

export async function assembleIso(opts: AssembleIsoOptions & { digest?: boolean }): Promise<WrittenIso> {
  try {
    const prepared = await prepareIso(opts);
    try {
      return await prepared.finish(opts.ukiPath, opts.outPath, { signal: opts.signal, digest: opts.digest });
    } finally {
      await prepared.dispose();
    }
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  }
}

async function runXorriso(args: {
  volumeId: string;
  efiImage: string;
  marker: string;
  uki: string;
  outPath: string;
  signal?: AbortSignal;
}): Promise<void> {
  await runTool(
    COMMON_TOOLS.xorriso,
    [
      // Syncing every few MiB to a file that is fsynced at publish only slows the build down.
      '-stdio_sync', 'off',
      // Every file gets the same date, whatever the mtime of its source: the UKI's file date is
      // then the same whether xorriso copies it or it is spliced in.
      '-volume_date', 'all_file_dates', `=${SOURCE_DATE_EPOCH}`,
      '-as', 'mkisofs',
      '-quiet',
      '-iso-level', '3',
      // Rock Ridge with rationalized owners and modes (root, read-only): nothing of the build
      // host's users or directory permissions ends up in the image.
      '-r',
      '-V', args.volumeId,
      '-graft-points',
      '-e', ISO_PATHS.efiImage,
      '-no-emul-boot',
      // The same FAT image doubles as the EFI system partition when the ISO is a disk.
      '-efi-boot-part', '--efi-boot-image',
      // The UKI's data goes last, so that splicing only moves what follows it.
      '--sort-weight', '-1', ISO_PATHS.uki,
      '-o', args.outPath,
      `${ISO_PATHS.efiImage}=${args.efiImage}`,
      `${markerPath(args.volumeId)}=${args.marker}`,
      `${ISO_PATHS.uki}=${args.uki}`,
    ],
    { signal: args.signal, env: toolEnv },
  );
}
