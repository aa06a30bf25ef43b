// Booting the ephemeral OS (base-artifacts/ephemeral) from what the service builds, and talking to it
// once it runs: what the machine is and where the service sits for it, the build of its UKI with a
// test's overlay files, root SSH with a throwaway key, the hw-inventory schema.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { expect } from 'vitest';
import { serialConsole } from './qemu.js';
import { api, REPO, tempDir, waitForBuild } from './service.js';

const run = promisify(execFile);
// CommonJS packages with a default export: under NodeNext the class sits on .default.
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

export const ARCH = 'amd64' as const;
/** The address the guest knows the service by (QEMU guestfwd on the first user network). */
export const GUEST_SERVICE = '10.0.2.100';
/** Serial console logs of the booted machines. */
export const LOG_DIR = path.join(REPO, 'test-results/e2e');
/** Under TCG on a shared 2-core machine SSH comes up 40-150 s after QEMU starts. */
export const BOOT_MS = 360_000;

const SCHEMA = path.join(REPO, 'base-artifacts/ephemeral/hw-inventory.schema.json');

/**
 * Builds the ephemeral OS through the service's API (kernel and initramfs of ARCH, its serial console)
 * with `files` added by the overlay and /root/.ssh at 0700; waits for the build to complete.
 */
export async function buildEphemeral(serviceUrl: string, files: object[]): Promise<{ isoUrl: string; ukiUrl: string }> {
  const submitted = await api(`${serviceUrl}/api/v1/builds`, {
    method: 'POST',
    json: {
      kernel: `vmlinuz-${ARCH}`,
      initramfs: `initramfs-${ARCH}.img`,
      cmdline: `console=${serialConsole(ARCH)}`,
      architecture: ARCH,
      files,
      dirOverrides: [{ path: '/root/.ssh', mode: '0700' }],
    },
  });
  expect(submitted.status, submitted.text).toBe(202);
  const build = await waitForBuild(serviceUrl, submitted.body.id, 300_000);
  expect(build.state, build.error).toBe('completed');
  return build.artifacts;
}

/** Runs a command as root on the guest; `code` is ssh's exit status (255: ssh itself failed), -1 when it did not exit. */
export interface Ssh {
  (command: string, extraOptions?: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** A new ed25519 key without a passphrase; returns the private key's path (the public key is beside it, .pub). */
export async function sshKey(): Promise<string> {
  const key = path.join(tempDir('ssh'), 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'uod-e2e', '-f', key]);
  return key;
}

/** SSH as root to the guest port forwarded to 127.0.0.1:`port`, by `key` only; each command is killed after `timeoutMs`. */
export function sshTo(port: number, key: string, { timeoutMs }: { timeoutMs: number }): Ssh {
  return async (command, extraOptions = []) => {
    const args = [
      '-p', String(port), '-i', key,
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
      '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR',
      ...extraOptions, 'root@127.0.0.1', command,
    ];
    try {
      const { stdout, stderr } = await run('ssh', args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
}

/** Validates an hw-inventory document against base-artifacts/ephemeral/hw-inventory.schema.json (all errors, strict). */
export function checkHwInventory(inventory: unknown): { valid: boolean; errors: string } {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  const validate = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA, 'utf8')));
  const valid = validate(inventory);
  return { valid, errors: ajv.errorsText(validate.errors) };
}
