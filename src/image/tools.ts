// The one place that knows which external programs and data files the image layer uses, where
// they are, and how they are run (execa, cancellable, stderr kept for the error message).
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';
import type { Architecture } from './architecture.js';

export interface ArchTools {
  /** objcopy that understands this architecture's PE files (the host's one may not). */
  objcopy: string;
  /** systemd-stub, the EFI program a UKI is built around. */
  stub: string;
  /** grub-mkimage target and the directory holding its modules. */
  grubFormat: 'x86_64-efi' | 'arm64-efi';
  grubModuleDir: string;
  /** Name of the removable-media boot program in \EFI\BOOT\ for this architecture. */
  efiBootName: 'BOOTX64.EFI' | 'BOOTAA64.EFI';
}

const ARCH_TOOLS: Record<Architecture, ArchTools> = {
  amd64: {
    objcopy: 'x86_64-linux-gnu-objcopy',
    stub: '/usr/lib/systemd/boot/efi/linuxx64.efi.stub',
    grubFormat: 'x86_64-efi',
    grubModuleDir: '/usr/lib/grub/x86_64-efi',
    efiBootName: 'BOOTX64.EFI',
  },
  arm64: {
    objcopy: 'aarch64-linux-gnu-objcopy',
    stub: '/usr/lib/systemd/boot/efi/linuxaa64.efi.stub',
    grubFormat: 'arm64-efi',
    grubModuleDir: '/usr/lib/grub/arm64-efi',
    efiBootName: 'BOOTAA64.EFI',
  },
};

export const COMMON_TOOLS = {
  xorriso: 'xorriso',
  grubMkimage: 'grub-mkimage',
  mformat: 'mformat',
  mcopy: 'mcopy',
  mmd: 'mmd',
} as const;

export function archTools(arch: Architecture): ArchTools {
  const tools = ARCH_TOOLS[arch];
  if (tools === undefined) throw new Error(`unsupported architecture ${JSON.stringify(arch)}`);
  return tools;
}

interface Requirement {
  label: string;
  kind: 'command' | 'file';
  path: string;
}

function requirements(arch: Architecture): Requirement[] {
  const t = archTools(arch);
  return [
    { label: `systemd-stub for ${arch} (${t.stub}, Debian package systemd-boot-efi${arch === 'arm64' ? ':arm64' : ''})`, kind: 'file', path: t.stub },
    { label: `GRUB ${t.grubFormat} modules (${t.grubModuleDir}, Debian package grub-efi-${arch}-bin${arch === 'arm64' ? ':arm64' : ''})`, kind: 'file', path: join(t.grubModuleDir, 'moddep.lst') },
    { label: 'grub-mkimage (Debian package grub-common)', kind: 'command', path: COMMON_TOOLS.grubMkimage },
    { label: 'xorriso (Debian package xorriso)', kind: 'command', path: COMMON_TOOLS.xorriso },
    { label: 'mformat (Debian package mtools)', kind: 'command', path: COMMON_TOOLS.mformat },
    { label: 'mcopy (Debian package mtools)', kind: 'command', path: COMMON_TOOLS.mcopy },
  ];
}

async function isReadable(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

async function findCommand(name: string): Promise<string | null> {
  const dirs = (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter).filter(Boolean);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // try the next directory
    }
  }
  return null;
}

/** Human-readable names of what building images for `arch` needs and this host lacks. */
export async function missingTools(arch: Architecture): Promise<string[]> {
  const missing: string[] = [];
  for (const req of requirements(arch)) {
    const present = req.kind === 'file' ? await isReadable(req.path) : (await findCommand(req.path)) !== null;
    if (!present) missing.push(req.label);
  }
  return missing;
}

/**
 * Runs an external program; a failure becomes an Error naming the program, its exit status
 * and its stderr. `signal` kills the program when the build is cancelled.
 */
export async function runTool(
  command: string,
  args: string[],
  options: { signal?: AbortSignal; cwd?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const result = await execa(command, args, {
    reject: false,
    stdin: 'ignore',
    cwd: options.cwd,
    env: options.env,
    cancelSignal: options.signal,
    forceKillAfterDelay: 2000,
  });
  if (result.isCanceled) {
    throw options.signal?.reason instanceof Error ? options.signal.reason : new Error(`${command} cancelled`);
  }
  if (result.failed) {
    const status = result.exitCode !== undefined ? `exit code ${result.exitCode}` : (result.signal ?? result.shortMessage);
    const stderr = String(result.stderr ?? '').trim();
    throw new Error(`${command} failed (${status})${stderr ? `: ${stderr}` : ''}`);
  }
  return String(result.stdout ?? '');
}
