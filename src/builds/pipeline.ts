// The build pipeline: overlay → UKI (base initramfs + overlay streamed into it) → ISO in a private work
// directory, with their digests. It only produces files; the registry publishes them through its store.
import path from 'node:path';
import type { Logger } from 'pino';
import { ARTIFACT_FILES, assembleArtifacts, type ArtifactKind } from '../image/artifacts.js';
import { buildOverlay, type OverlayFile } from '../image/overlay.js';
import type { SecureBootSigner } from '../image/secure-boot.js';
import { DEFAULT_UKI_WRITER, type UkiWriter } from '../image/uki.js';
import { predictPcr11, type Pcr11Value } from '../image/pcr11.js';
import type { NormalizedBuildRequest } from './request.js';
import { BUILDER_VERSION } from './build-id.js';

export interface ProducedArtifact {
  path: string;
  size: number;
  sha256: string;
}

export interface PipelineJob {
  id: string;
  request: NormalizedBuildRequest;
  kernelPath: string;
  initramfsPath: string;
  workDir: string;
  signal: AbortSignal;
}

/**
 * The boot phases after which PCR 11 is predicted: none (the stub's measurements alone), then the two
 * that the ephemeral OS's systemd-pcrphase units extend (base-artifacts/ephemeral enables them; it has
 * no initrd phase). Its checkin runs after "ready", so that is the value an inspection reads.
 */
export const PREDICTED_PHASES: string[][] = [[], ['sysinit'], ['sysinit', 'ready']];

export interface BuildMeasurements {
  /** TPM PCR 11, SHA-256 bank, per boot phase (pcr11.ts). */
  pcr11: Pcr11Value[];
}

export type PipelineResult = Record<ArtifactKind, ProducedArtifact> & { measurements?: BuildMeasurements };

export interface BuildPipeline {
  run(job: PipelineJob): Promise<PipelineResult>;
  /** Settings of this pipeline that change its output for the same inputs; part of the build id. */
  readonly variant?: string;
}

function overlayFiles(request: NormalizedBuildRequest): OverlayFile[] {
  return request.files.map((f) => ({
    path: f.path,
    content: f.type === 'file' ? Buffer.from(f.contentBase64 ?? '', 'base64') : undefined,
    linkTarget: f.type === 'symlink' ? f.linkTarget : undefined,
    mode: f.mode,
    uid: f.uid,
    gid: f.gid,
    dirMode: f.dirMode,
    dirUid: f.dirUid,
    dirGid: f.dirGid,
  }));
}

function osRelease(id: string): string {
  return [
    'NAME="uki-on-demand"',
    'ID=uki-on-demand',
    `VERSION_ID="${BUILDER_VERSION.split('/')[1]}"`,
    `PRETTY_NAME="uki-on-demand ephemeral image ${id.slice(0, 12)}"`,
    `IMAGE_ID=${id}`,
    '',
  ].join('\n');
}

export class ImagePipeline implements BuildPipeline {
  readonly variant: string;

  constructor(private readonly options: { logger?: Logger; ukiWriter?: UkiWriter; signer?: SecureBootSigner } = {}) {
    // The two writers lay out the same sections at the same addresses, but their bytes differ; a
    // signed build differs by its signer's certificate (a new key gives new builds).
    this.variant = `uki-writer=${options.ukiWriter ?? DEFAULT_UKI_WRITER}` + (options.signer ? `;secure-boot-cert=${options.signer.certFingerprint}` : '');
  }

  async run(job: PipelineJob): Promise<PipelineResult> {
    const { request, workDir, signal } = job;
    const hasOverlay = request.files.length > 0 || request.dirOverrides.length > 0;
    const overlay = hasOverlay ? await buildOverlay(overlayFiles(request), request.dirOverrides) : null;
    signal.throwIfAborted();

    const ukiPath = path.join(workDir, ARTIFACT_FILES.uki);
    const isoPath = path.join(workDir, ARTIFACT_FILES.iso);
    const written = await assembleArtifacts({
      arch: request.architecture,
      kernelPath: job.kernelPath,
      baseInitramfsPath: job.initramfsPath,
      overlay,
      cmdline: request.cmdline,
      osRelease: osRelease(job.id),
      volumeId: volumeId(job.id),
      ukiPath,
      isoPath,
      workDir,
      signal,
      digest: true,
      measure: true,
      ukiWriter: this.options.ukiWriter,
      ...(this.options.signer ? { signUki: (file: string, s?: AbortSignal) => this.options.signer!.signInPlace(file, s) } : {}),
      onIsoFallback: (reason) => this.options.logger?.warn({ buildId: job.id, reason: reason.message }, 'ISO built by copying the UKI through xorriso'),
    });
    signal.throwIfAborted();
    const produced = (file: string, w: { bytes: number; sha256?: string }): ProducedArtifact => {
      if (!w.sha256) throw new Error(`no digest was computed for ${path.basename(file)}`);
      return { path: file, size: w.bytes, sha256: w.sha256 };
    };
    const measurements = written.uki.measuredSections ? { pcr11: predictPcr11(written.uki.measuredSections, PREDICTED_PHASES) } : undefined;
    return { uki: produced(ukiPath, written.uki), iso: produced(isoPath, written.iso), ...(measurements ? { measurements } : {}) };
  }
}

/** ISO9660 volume ids are at most 32 d-characters; the id prefix keeps them unique per build. */
function volumeId(id: string): string {
  return `UOD_${id.slice(0, 16).toUpperCase()}`;
}
