// A build's two artifacts, the UKI and the ISO around it, made together (the ISO's GRUB, FAT image
// and template are prepared while the UKI is written), and the names they are published under.
import { stat } from 'node:fs/promises';
import { digestFile } from './file-digest.js';
import { assembleUki, type UkiWriter, type WrittenUki } from './uki.js';
import type { WrittenFile } from './segments.js';
import { buildDirectIso } from './iso-direct.js';
import { prepareIso } from './iso.js';
import type { Architecture } from './architecture.js';

/**
 * What a build publishes, by kind: the file name (the last segment of the artifact's URL) and the
 * Content-Type it is served with.
 */
export const ARTIFACTS = {
  uki: { file: 'uki.efi', contentType: 'application/efi' },
  iso: { file: 'boot.iso', contentType: 'application/x-iso9660-image' },
} as const;
export type ArtifactKind = keyof typeof ARTIFACTS;
export const ARTIFACT_KINDS = Object.keys(ARTIFACTS) as ArtifactKind[];
/** The file names alone, by kind. */
export const ARTIFACT_FILES = { uki: ARTIFACTS.uki.file, iso: ARTIFACTS.iso.file } as const;

export interface AssembleArtifactsOptions {
  arch: Architecture;
  kernelPath: string;
  baseInitramfsPath: string;
  /** gzip newc overlay appended to the base initramfs, or null for the base alone. */
  overlay: Buffer | null;
  cmdline: string;
  osRelease: string;
  /** ISO9660 volume id, unique per build (it also names GRUB's marker file). */
  volumeId: string;
  ukiPath: string;
  isoPath: string;
  workDir: string;
  signal?: AbortSignal;
  /**
   * Return the SHA-256 of both artifacts: hashed on the way where this code writes the bytes (direct
   * UKI writer, spliced ISO), read back from the file where a tool wrote it (objcopy, xorriso).
   */
  digest?: boolean;
  /**
   * How the UKI is written (DEFAULT_UKI_WRITER when not given). Only the direct writer streams base
   * and overlay into the UKI; objcopy is given the initramfs as a file in `workDir`.
   */
  ukiWriter?: UkiWriter;
  /** Also return the digests of the UKI's sections that systemd-stub measures (pcr11.ts). */
  measure?: boolean;
  /** Called when the ISO could not be spliced and xorriso copied the UKI itself. */
  onIsoFallback?: (reason: Error) => void;
  /**
   * Signs the UKI in place (Secure Boot); its digest is then read back, and the ISO is the direct one
   * (iso-direct.ts): the firmware starts the signed UKI itself, with no unsigned loader before it.
   */
  signUki?: (path: string, signal?: AbortSignal) => Promise<void>;
}

export interface AssembledArtifacts {
  uki: WrittenUki;
  iso: WrittenFile;
}

export async function assembleArtifacts(opts: AssembleArtifactsOptions): Promise<AssembledArtifacts> {
  if (opts.signUki) return assembleSignedArtifacts(opts, opts.signUki);
  const { arch, signal, workDir } = opts;
  const isoPreparation = prepareIso({ arch, volumeId: opts.volumeId, workDir, signal, onFallback: opts.onIsoFallback });
  // Whatever happens to the UKI, the ISO's work files must not outlive this call.
  isoPreparation.catch(() => undefined);
  let uki: WrittenUki;
  try {
    uki = await assembleUki({
      arch,
      kernelPath: opts.kernelPath,
      initrd: { basePath: opts.baseInitramfsPath, overlay: opts.overlay },
      cmdline: opts.cmdline,
      osRelease: opts.osRelease,
      outPath: opts.ukiPath,
      workDir,
      signal,
      digest: opts.digest,
      measure: opts.measure,
      writer: opts.ukiWriter,
    });
  } catch (err) {
    await isoPreparation.then((p) => p.dispose(), () => undefined);
    throw err;
  }
  const prepared = await isoPreparation;
  try {
    const iso = await prepared.finish(opts.ukiPath, opts.isoPath, { signal, digest: opts.digest });
    return { uki, iso };
  } finally {
    await prepared.dispose();
  }
}

/** A Secure Boot build: the UKI, signed, then the ISO whose EFI image is that UKI. */
async function assembleSignedArtifacts(opts: AssembleArtifactsOptions, sign: (path: string, signal?: AbortSignal) => Promise<void>): Promise<AssembledArtifacts> {
  const { signal } = opts;
  const { measuredSections } = await assembleUki({
    arch: opts.arch,
    kernelPath: opts.kernelPath,
    initrd: { basePath: opts.baseInitramfsPath, overlay: opts.overlay },
    cmdline: opts.cmdline,
    osRelease: opts.osRelease,
    outPath: opts.ukiPath,
    workDir: opts.workDir,
    signal,
    measure: opts.measure,
    writer: opts.ukiWriter,
  });
  // The signature goes into the certificate table, which the stub does not measure: same PCR 11.
  await sign(opts.ukiPath, signal);
  const written = opts.digest ? await digestFile(opts.ukiPath) : { bytes: (await stat(opts.ukiPath)).size };
  const uki = measuredSections ? { ...written, measuredSections } : written;
  const iso = await buildDirectIso({ arch: opts.arch, ukiPath: opts.ukiPath, outPath: opts.isoPath, volumeId: opts.volumeId, workDir: opts.workDir, signal, digest: opts.digest });
  return { uki, iso };
}
