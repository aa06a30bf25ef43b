// The build pipeline: overlay → initramfs → UKI → ISO inside a private work directory, then the
// digests the service records at publish. It only produces files; publishing is the registry's job.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { buildOverlay, type OverlayFile } from '../image/overlay.js';
import { writeInitramfs } from '../image/initramfs.js';
import { assembleUki } from '../image/uki.js';
import { assembleIso } from '../image/iso.js';
import type { NormalizedBuildRequest } from './request.js';
import { BUILDER_VERSION } from './build-id.js';

export const ARTIFACT_FILES = { uki: 'uki.efi', iso: 'boot.iso' } as const;
export type ArtifactKind = keyof typeof ARTIFACT_FILES;

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

export type PipelineResult = Record<ArtifactKind, ProducedArtifact>;

export interface BuildPipeline {
  run(job: PipelineJob): Promise<PipelineResult>;
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

async function digest(file: string): Promise<ProducedArtifact> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { path: file, size, sha256: hash.digest('hex') };
}

export class ImagePipeline implements BuildPipeline {
  async run(job: PipelineJob): Promise<PipelineResult> {
    const { request, workDir, signal } = job;
    const hasOverlay = request.files.length > 0 || request.dirOverrides.length > 0;
    const overlay = hasOverlay ? await buildOverlay(overlayFiles(request), request.dirOverrides) : null;
    signal.throwIfAborted();

    const initrd = path.join(workDir, 'initramfs.img');
    await writeInitramfs(job.initramfsPath, overlay, initrd, signal);

    const uki = path.join(workDir, ARTIFACT_FILES.uki);
    await assembleUki({
      arch: request.architecture,
      kernelPath: job.kernelPath,
      initrdPath: initrd,
      cmdline: request.cmdline,
      osRelease: osRelease(job.id),
      outPath: uki,
      workDir,
      signal,
    });
    await fs.rm(initrd, { force: true });

    const iso = path.join(workDir, ARTIFACT_FILES.iso);
    // The UKI's digest is read from the page cache while xorriso packs the ISO.
    const [ukiDigest] = await Promise.all([
      digest(uki),
      assembleIso({ arch: request.architecture, ukiPath: uki, outPath: iso, workDir, volumeId: volumeId(job.id), signal }),
    ]);
    signal.throwIfAborted();
    return { uki: ukiDigest, iso: await digest(iso) };
  }
}

/** ISO9660 volume ids are at most 32 d-characters; the id prefix keeps them unique per build. */
export function volumeId(id: string): string {
  return `UOD_${id.slice(0, 16).toUpperCase()}`;
}
