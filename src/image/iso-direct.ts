// The ISO of a Secure Boot build: its El Torito EFI image (also the EFI system partition when the ISO
// is a disk) holds the signed UKI itself as \EFI\BOOT\BOOT<arch>.EFI, so the firmware verifies and
// starts it with no boot loader in between: nothing else to sign, no shim. The FAT image is larger
// than El Torito's 16-bit sector count can say (xorriso then writes 0); OVMF reads the image whole
// (tested by booting it). ISO9660 holds nothing else, so the UKI's bytes are in the image once.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Architecture } from './architecture.js';
import { digestFile } from './file-digest.js';
// The GRUB ISOs' fixed date: identical inputs, identical images.
import { isoVolumeId, SOURCE_DATE_EPOCH, toolEnv } from './iso.js';
import type { WrittenFile } from './segments.js';
import { archTools, COMMON_TOOLS, runTool } from './tools.js';

/** Room in the FAT image beyond the UKI: FAT tables, directories, and rounding to whole MiB. */
const FAT_MARGIN_BYTES = 2 * 1024 * 1024;
export const DIRECT_ISO_EFI_IMAGE = '/efiboot.img';

export async function buildDirectIso(opts: {
  arch: Architecture;
  ukiPath: string;
  outPath: string;
  volumeId: string;
  workDir: string;
  signal?: AbortSignal;
  digest?: boolean;
}): Promise<WrittenFile> {
  const { signal } = opts;
  const dir = await mkdtemp(join(opts.workDir, 'iso-direct-'));
  try {
    const esp = join(dir, 'efiboot.img');
    const ukiBytes = (await stat(opts.ukiPath)).size;
    const mib = Math.ceil((ukiBytes + FAT_MARGIN_BYTES) / (1024 * 1024));
    const image = ['-i', esp];
    // FAT32 above 32 MiB, FAT16 below (mformat picks by size when -F is not given).
    await runTool(COMMON_TOOLS.mformat, ['-C', ...image, '-T', String(mib * 2048), '-h', '64', '-s', '32', '-N', '0', '-v', 'UKIBOOT', '::'], { signal, env: toolEnv });
    await runTool(COMMON_TOOLS.mmd, [...image, '::/EFI', '::/EFI/BOOT'], { signal, env: toolEnv });
    await runTool(COMMON_TOOLS.mcopy, [...image, opts.ukiPath, `::/EFI/BOOT/${archTools(opts.arch).efiBootName}`], { signal, env: toolEnv });
    await rm(opts.outPath, { force: true });
    await runTool(
      COMMON_TOOLS.xorriso,
      [
        '-stdio_sync', 'off',
        '-volume_date', 'all_file_dates', `=${SOURCE_DATE_EPOCH}`,
        '-as', 'mkisofs', '-quiet', '-iso-level', '3', '-r',
        '-V', isoVolumeId(opts.volumeId),
        '-graft-points',
        '-e', DIRECT_ISO_EFI_IMAGE, '-no-emul-boot',
        '-efi-boot-part', '--efi-boot-image',
        '-o', opts.outPath,
        `${DIRECT_ISO_EFI_IMAGE}=${esp}`,
      ],
      { signal, env: toolEnv },
    );
    return opts.digest ? await digestFile(opts.outPath) : { bytes: (await stat(opts.outPath)).size };
  } catch (err) {
    await rm(opts.outPath, { force: true });
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
