// The catalog of base artifacts: resolves the plain names a request uses to files in the base-artifacts
// directory, and caches what is expensive to learn about them (sha256, the kernel's PE architecture)
// until the file changes on disk.
import fs from 'node:fs/promises';
import path from 'node:path';
import { digestFile } from '../image/copy.js';
import { readPe } from '../image/pe.js';
import { BASE_ARTIFACT_NAME, type Architecture } from '../builds/request.js';

export class BaseArtifactError extends Error {
  constructor(readonly field: 'kernel' | 'initramfs', message: string) {
    super(`${field}: ${message}`);
  }
}

export interface ResolvedBase {
  path: string;
  sha256: string;
  size: number;
}

interface CacheEntry {
  stamp: string;
  sha256: Promise<string>;
  arch?: Promise<Architecture | null>;
}

export class BaseArtifactCatalog {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(readonly dir: string) {}

  /** Names of the regular files available, for error messages and the README's listing. */
  async list(): Promise<string[]> {
    const entries = await fs.readdir(this.dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isFile() && BASE_ARTIFACT_NAME.test(e.name)).map((e) => e.name).sort();
  }

  async resolveKernel(name: string, architecture: Architecture): Promise<ResolvedBase> {
    const { resolved, entry } = await this.resolve('kernel', name);
    entry.arch ??= readPe(resolved.path).then((pe) => pe.arch, () => null);
    const arch = await entry.arch;
    if (arch === null) throw new BaseArtifactError('kernel', `"${name}" is not an EFI-bootable kernel (no PE header)`);
    if (arch !== architecture) {
      throw new BaseArtifactError('kernel', `"${name}" is an ${arch} kernel but architecture is "${architecture}"`);
    }
    return resolved;
  }

  async resolveInitramfs(name: string): Promise<ResolvedBase> {
    return (await this.resolve('initramfs', name)).resolved;
  }

  private async resolve(field: 'kernel' | 'initramfs', name: string): Promise<{ resolved: ResolvedBase; entry: CacheEntry }> {
    // Names were validated as plain file names; the join can not leave the directory.
    const file = path.join(this.dir, name);
    const st = await fs.stat(file).catch(() => null);
    if (!st || !st.isFile()) throw new BaseArtifactError(field, `no base artifact named "${name}" in the base artifacts directory`);
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    let entry = this.cache.get(file);
    if (!entry || entry.stamp !== stamp) {
      entry = { stamp, sha256: digestFile(file).then((d) => d.sha256) };
      this.cache.set(file, entry);
      entry.sha256.catch(() => this.cache.delete(file));
    }
    return { resolved: { path: file, sha256: await entry.sha256, size: st.size }, entry };
  }
}
