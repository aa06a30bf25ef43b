// The base-artifact catalog: which names a request may use, the files they resolve to, and what is
// costly to learn about a file (sha256, a kernel's PE architecture), cached until the file changes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { PromiseCache } from '../concurrency/promise-cache.js';
import { digestFile } from '../image/file-digest.js';
import { readPe } from '../image/pe.js';
import type { Architecture } from '../image/architecture.js';

/** Base artifact names are plain file names: no separators, no leading dot. */
export const BASE_ARTIFACT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export class BaseArtifactError extends Error {
  constructor(readonly field: 'kernel' | 'initramfs', message: string) {
    super(`${field}: ${message}`);
  }
}

export interface ResolvedBase {
  path: string;
  sha256: string;
}

export class BaseArtifactCatalog {
  // Keyed by path, versioned by the file's stamp: a file renamed over the old one is hashed again.
  private readonly digests = new PromiseCache<string, string>();
  private readonly architectures = new PromiseCache<string, Architecture | null>();

  constructor(private readonly dir: string) {}

  /** Names of the regular files available (start-up warns when there are none). */
  async list(): Promise<string[]> {
    const entries = await fs.readdir(this.dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isFile() && BASE_ARTIFACT_NAME.test(e.name)).map((e) => e.name).sort();
  }

  async resolveKernel(name: string, architecture: Architecture): Promise<ResolvedBase> {
    const { resolved, stamp } = await this.resolve('kernel', name);
    const arch = await this.architectures.get(resolved.path, () => readPe(resolved.path).then((pe) => pe.arch, () => null), stamp);
    if (arch === null) throw new BaseArtifactError('kernel', `"${name}" is not an EFI-bootable kernel (no PE header)`);
    if (arch !== architecture) {
      throw new BaseArtifactError('kernel', `"${name}" is an ${arch} kernel but architecture is "${architecture}"`);
    }
    return resolved;
  }

  async resolveInitramfs(name: string): Promise<ResolvedBase> {
    return (await this.resolve('initramfs', name)).resolved;
  }

  private async resolve(field: 'kernel' | 'initramfs', name: string): Promise<{ resolved: ResolvedBase; stamp: string }> {
    // Names were validated as plain file names; the join can not leave the directory.
    const file = path.join(this.dir, name);
    const st = await fs.stat(file).catch(() => null);
    if (!st || !st.isFile()) throw new BaseArtifactError(field, `no base artifact named "${name}" in the base artifacts directory`);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const sha256 = await this.digests.get(file, () => digestFile(file).then((d) => d.sha256), stamp);
    return { resolved: { path: file, sha256 }, stamp };
  }
}
