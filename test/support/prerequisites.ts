// What a test file needs from the machine (base artifacts, packages, root), checked when the file is
// loaded: a missing prerequisite fails the file with what to run or install, never skips it, so that a
// run cannot read green over tests that did not run.
import fs from 'node:fs';
import path from 'node:path';
import { BASE_ARTIFACTS } from './service-process.mjs';

/** What `make base-artifacts-tiny` makes; the vitest global setup requires them for every run. */
export const TINY_BASE_ARTIFACTS = ['vmlinuz-amd64', 'vmlinuz-arm64', 'initramfs-tiny-amd64.img', 'initramfs-tiny-arm64.img'];

/** Throws unless every named file is in base-artifacts/out, naming the make target that makes them. */
export function requireBaseArtifacts(...names: string[]): void {
  const wanted = names.length ? names : ['vmlinuz-amd64', 'initramfs-tiny-amd64.img'];
  const missing = wanted.filter((n) => !fs.existsSync(path.join(BASE_ARTIFACTS, n)));
  if (missing.length === 0) return;
  const target = missing.every((n) => TINY_BASE_ARTIFACTS.includes(n)) ? 'make base-artifacts-tiny' : 'make base-artifacts';
  throw new Error(`base artifacts missing in ${BASE_ARTIFACTS}: ${missing.join(', ')}; run \`${target}\``);
}

/** Throws unless `file` exists, naming the Debian package that has it. */
export function requireFile(file: string, debianPackage: string): void {
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: apt install ${debianPackage} (or \`make deps\`)`);
}

/** Throws unless `tool` is on PATH, naming the Debian package that has it. */
export function requireTool(tool: string, debianPackage: string): void {
  const found = (process.env.PATH ?? '').split(':').some((dir) => dir && fs.existsSync(path.join(dir, tool)));
  if (!found) throw new Error(`${tool} is not on PATH: apt install ${debianPackage} (or \`make deps\`)`);
}

/** Throws unless the tests run as root; `why` says what needs it. */
export function requireRoot(why: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${why}: run the tests as root (e.g. \`sudo make test-reliability\`)`);
}
