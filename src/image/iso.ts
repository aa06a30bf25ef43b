// The bootable ISO around a UKI, UEFI only, as a CD (El Torito) and as a disk (GPT): GRUB in a small
// FAT image finds the ISO9660 volume by a marker file unique to the image and chainloads the UKI.
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PromiseCache } from '../concurrency/promise-cache.js';
import { digestFile } from './file-digest.js';
import type { WrittenFile } from './segments.js';
import { IsoLayoutError, spliceFile } from './iso-splice.js';
import type { Architecture } from './architecture.js';
import { archTools, COMMON_TOOLS, runTool } from './tools.js';

export interface AssembleIsoOptions {
  arch: Architecture;
  ukiPath: string;
  outPath: string;
  workDir: string;
  /** ISO9660 volume id; also names the marker file, so it must be unique per image. */
  volumeId: string;
  signal?: AbortSignal;
  /**
   * 'splice' (default): the UKI is copied into a template xorriso made around a placeholder;
   * falls back to 'xorriso' if the template is not as expected. 'xorriso': xorriso copies the UKI.
   */
  method?: 'splice' | 'xorriso';
  /** Called when 'splice' had to fall back to 'xorriso', with the reason. */
  onFallback?: (reason: Error) => void;
}

// Speed: xorriso moves data in 2 KiB steps (about 5x slower than a copy) and every run costs at
// least 0.1 s, so by default the UKI is spliced into a template that xorriso made around a
// placeholder (iso-splice.ts), and templates are reused across builds (see templateFor).

/** Paths inside the ISO9660 tree. */
const ISO_PATHS = {
  uki: '/EFI/Linux/uki.efi',
  efiImage: '/EFI/uki-on-demand/efiboot.img',
  // Alone in its directory, so that its name never changes the order of directory records.
  markerDir: '/EFI/uki-on-demand/marker',
} as const;

// Only what the embedded script needs: filesystems and partition maps to find the marker,
// `search`, and `chainloader` + `boot`. No `normal`: the script runs in the rescue parser.
const GRUB_MODULES = ['fat', 'iso9660', 'part_gpt', 'part_msdos', 'search', 'search_fs_file', 'chain', 'boot'];

// Fixed timestamps make identical inputs give identical images (xorriso and mtools both honour it).
export const SOURCE_DATE_EPOCH = '946684800'; // 2000-01-01T00:00:00Z
export const toolEnv = { SOURCE_DATE_EPOCH };

// Recognisable and unlike any real UKI: the splice step finds the placeholder's extent by content.
const PLACEHOLDER = Buffer.from('uki-on-demand placeholder for the UKI, replaced after xorriso has run\n'.repeat(29).slice(0, 2048));

// 1 MiB of FAT12: GRUB with these modules is 300-370 KiB, so there is room for more modules.
const EFI_IMAGE_SECTORS = 2048;

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

/** Builds GRUB for `arch` with the embedded script, as the standalone EFI program `efiPath`. */
async function buildGrubEfi(arch: Architecture, volumeId: string, efiPath: string, scratchDir: string, signal?: AbortSignal): Promise<void> {
  const tools = archTools(arch);
  const cfg = join(scratchDir, `grub-embedded-${arch}.cfg`);
  await writeFile(cfg, grubScript(volumeId));
  await runTool(
    COMMON_TOOLS.grubMkimage,
    ['-O', tools.grubFormat, '-d', tools.grubModuleDir, '-p', '/EFI/BOOT', '-c', cfg, '-o', efiPath, ...GRUB_MODULES],
    { signal, env: toolEnv },
  );
}

/**
 * The El Torito EFI boot image, which is also the EFI system partition when the ISO is a disk:
 * a FAT image holding \EFI\BOOT\<loader>. Formatting runs while GRUB is being built.
 */
async function buildEfiBootImage(arch: Architecture, volumeId: string, dir: string, outPath: string, signal?: AbortSignal): Promise<void> {
  // A tree of its own: mcopy -s copies whatever it holds.
  const tree = await mkdtemp(join(dir, 'esp-'));
  try {
    await rm(outPath, { force: true });
    const image = ['-i', outPath];
    const bootDir = join(tree, 'EFI', 'BOOT');
    await mkdir(bootDir, { recursive: true });
    await Promise.all([
      buildGrubEfi(arch, volumeId, join(bootDir, archTools(arch).efiBootName), dir, signal),
      runTool(COMMON_TOOLS.mformat, ['-C', ...image, '-T', String(EFI_IMAGE_SECTORS), '-h', '2', '-s', '32', '-N', '0', '-v', 'UKIBOOT', '::'], { signal, env: toolEnv }),
    ]);
    await runTool(COMMON_TOOLS.mcopy, ['-s', ...image, join(tree, 'EFI'), '::/'], { signal, env: toolEnv });
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}

/** Builds the ISO with xorriso, from scratch, with `ukiPath` as the UKI. */
async function buildIsoWithXorriso(arch: Architecture, volumeId: string, ukiPath: string, outPath: string, workDir: string, signal?: AbortSignal): Promise<void> {
  const id = isoVolumeId(volumeId);
  const dir = await mkdtemp(join(workDir, 'xorriso-'));
  try {
    const efiImage = join(dir, 'efiboot.img');
    const marker = join(dir, 'marker');
    await Promise.all([buildEfiBootImage(arch, id, dir, efiImage, signal), writeFile(marker, `${id}\n`)]);
    await rm(outPath, { force: true });
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
        '-V', id,
        '-graft-points',
        '-e', ISO_PATHS.efiImage,
        '-no-emul-boot',
        // The same FAT image doubles as the EFI system partition when the ISO is a disk.
        '-efi-boot-part', '--efi-boot-image',
        // The UKI's data goes last, so that splicing only moves what follows it.
        '--sort-weight', '-1', ISO_PATHS.uki,
        '-o', outPath,
        `${ISO_PATHS.efiImage}=${efiImage}`,
        `${markerPath(id)}=${marker}`,
        `${ISO_PATHS.uki}=${ukiPath}`,
      ],
      { signal, env: toolEnv },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The template for `volumeId` made by xorriso itself (GRUB, FAT image, marker, placeholder UKI). */
export async function freshTemplate(arch: Architecture, volumeId: string, workDir: string, signal?: AbortSignal): Promise<Buffer> {
  const dir = await mkdtemp(join(workDir, 'template-'));
  try {
    const placeholder = join(dir, 'placeholder');
    const iso = join(dir, 'template.iso');
    await writeFile(placeholder, PLACEHOLDER);
    await buildIsoWithXorriso(arch, volumeId, placeholder, iso, dir, signal);
    return await readFile(iso);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Templates for two volume ids of the same length differ only where the id is written (volume
 * descriptor, marker name and content, GRUB's script inside the FAT image). One template per
 * architecture and id length is kept with the byte positions that spell the id, found by
 * building it for two ids that differ in every character; any other difference disables reuse.
 */
interface ReusableTemplate {
  image: Buffer;
  /** [offset in image, index in the volume id] */
  idBytes: Array<[number, number]>;
}

// By architecture and id length; a failure or a template that cannot be reused is not kept.
const templateCache = new PromiseCache<string, ReusableTemplate | null>((template) => template !== null);
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_';

async function reusableTemplate(arch: Architecture, length: number, workDir: string): Promise<ReusableTemplate | null> {
  // Distinct characters, so that a byte's value tells which character of the id it is; the
  // second id is the first one rotated, so that the two differ at every position.
  const first = ID_CHARS.slice(0, length);
  const second = length === 1 ? 'B' : first.slice(1) + first[0];
  // No cancellation signal: other builds may be waiting for the same template.
  const [a, b] = [await freshTemplate(arch, first, workDir), await freshTemplate(arch, second, workDir)];
  if (a.length !== b.length) return null;
  const idBytes: Array<[number, number]> = [];
  for (let offset = 0; offset < a.length; offset++) {
    if (a[offset] === b[offset]) continue;
    const index = first.indexOf(String.fromCharCode(a[offset]!));
    if (index < 0 || b[offset] !== second.charCodeAt(index)) return null;
    idBytes.push([offset, index]);
  }
  return { image: a, idBytes };
}

/** The splice template for `volumeId`: reused when possible, otherwise made by xorriso. */
export async function templateFor(arch: Architecture, volumeId: string, workDir: string, signal?: AbortSignal): Promise<Buffer> {
  const id = isoVolumeId(volumeId);
  if (id.length <= ID_CHARS.length) {
    const template = await templateCache.get(`${arch}:${id.length}`, () => reusableTemplate(arch, id.length, workDir)).catch(() => null);
    signal?.throwIfAborted();
    if (template !== null) {
      const image = Buffer.from(template.image);
      for (const [offset, index] of template.idBytes) image[offset] = id.charCodeAt(index);
      return image;
    }
  }
  return freshTemplate(arch, id, workDir, signal);
}

/**
 * An ISO made up to the point where only the UKI is missing. Lets the caller get the template
 * ready while the UKI is being written.
 */
export interface PreparedIso {
  /** Writes the ISO around `ukiPath`; may be called once. */
  finish(ukiPath: string, outPath: string, options?: { signal?: AbortSignal; digest?: boolean }): Promise<WrittenFile>;
  /** Removes the work files; safe to call more than once. */
  dispose(): Promise<void>;
}

export async function prepareIso(opts: Omit<AssembleIsoOptions, 'ukiPath' | 'outPath'>): Promise<PreparedIso> {
  opts.signal?.throwIfAborted();
  const volumeId = isoVolumeId(opts.volumeId);
  await mkdir(opts.workDir, { recursive: true });
  const dir = await mkdtemp(join(opts.workDir, 'iso-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  try {
    const template = (opts.method ?? 'splice') === 'splice' ? await templateFor(opts.arch, volumeId, dir, opts.signal) : null;
    return {
      dispose,
      async finish(ukiPath, outPath, options = {}) {
        const signal = options.signal ?? opts.signal;
        signal?.throwIfAborted();
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
          await buildIsoWithXorriso(opts.arch, volumeId, ukiPath, outPath, dir, signal);
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

export async function assembleIso(opts: AssembleIsoOptions & { digest?: boolean }): Promise<WrittenFile> {
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
