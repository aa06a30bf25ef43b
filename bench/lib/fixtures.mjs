// Inputs shared by the build figures: the base-artifacts directory the service and the baseline script
// both read (the real Debian kernel plus incompressible random "initramfs" filler of each size; the
// pipeline only appends to the base, so random bytes are accepted), and a realistic per-server request
// whose overlay (cloud-init seed, SSH key, checkin URL) the baseline script reproduces file for file.
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BASE_DIR, KERNEL_SOURCE, WORK } from './paths.mjs';

export const MiB = 1024 * 1024;
export const KERNEL_NAME = 'vmlinuz-amd64';

export function fillerName(mb) {
  return `initramfs-filler-${mb}M.img`;
}

/** Creates bench/work/base with the kernel and fillers of the given sizes (MiB); reuses what is there. */
export function prepareBase(sizesMb) {
  fs.mkdirSync(BASE_DIR, { recursive: true });
  if (!fs.existsSync(KERNEL_SOURCE)) {
    throw new Error(`${KERNEL_SOURCE} is missing: run \`make base-artifacts-tiny\` first`);
  }
  const kernel = path.join(BASE_DIR, KERNEL_NAME);
  const src = fs.statSync(KERNEL_SOURCE);
  const have = fs.existsSync(kernel) ? fs.statSync(kernel) : null;
  if (!have || have.size !== src.size || have.mtimeMs !== src.mtimeMs) {
    fs.copyFileSync(KERNEL_SOURCE, kernel);
    fs.utimesSync(kernel, src.atime, src.mtime);
  }
  const buffer = Buffer.allocUnsafe(MiB);
  for (const mb of sizesMb) {
    const file = path.join(BASE_DIR, fillerName(mb));
    if (fs.existsSync(file) && fs.statSync(file).size === mb * MiB) continue;
    const tmp = `${file}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      for (let i = 0; i < mb; i++) {
        randomFillSync(buffer);
        fs.writeSync(fd, buffer, 0, MiB);
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  }
}

const b64 = (s) => Buffer.from(s).toString('base64');

/** The overlay of one server: what an orchestrator sends for an inspection boot. */
export function overlayFiles(tag) {
  const userData = [
    '#cloud-config',
    'disable_root: false',
    'ssh_pwauth: false',
    'runcmd:',
    '  - [ /usr/local/sbin/checkin ]',
    'write_files:',
    '  - path: /etc/motd',
    '    content: |',
    `      ephemeral inspection image (${tag})`,
    '',
  ].join('\n');
  return [
    { path: '/var/lib/cloud/seed/nocloud/meta-data', content: `instance-id: ${tag}\nlocal-hostname: node-${tag}\n`, mode: 0o644 },
    { path: '/var/lib/cloud/seed/nocloud/user-data', content: userData, mode: 0o644 },
    { path: '/var/lib/cloud/seed/nocloud/network-config', content: 'version: 2\nethernets:\n  all:\n    match: {name: "en*"}\n    dhcp4: true\n', mode: 0o644 },
    { path: '/root/.ssh/authorized_keys', content: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeBenchKeyFakeBenchKeyFakeBenchKeyFake bench@orchestrator\n', mode: 0o600, dirMode: 0o700 },
    { path: '/etc/uod/checkin-url', content: `http://127.0.0.1:8080/api/v1/checkins/${tag}\n`, mode: 0o644 },
  ];
}

/** The POST /api/v1/builds body for these inputs. A different `cmdline` makes a different (cold) build. */
export function buildRequest({ initramfs, cmdline, tag = 'bench' }) {
  return {
    kernel: KERNEL_NAME,
    initramfs,
    cmdline,
    architecture: 'amd64',
    files: overlayFiles(tag).map((f) => ({
      path: f.path,
      contentBase64: b64(f.content),
      mode: '0' + f.mode.toString(8),
      ...(f.dirMode ? { dirMode: '0' + f.dirMode.toString(8) } : {}),
    })),
  };
}

/** Writes the same overlay as a directory tree for the baseline script (which packs it with cpio). */
export function writeOverlayTree(dir, tag = 'bench') {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const f of overlayFiles(tag)) {
    const target = path.join(dir, f.path);
    fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
    if (f.dirMode) fs.chmodSync(path.dirname(target), f.dirMode);
    fs.writeFileSync(target, f.content, { mode: f.mode });
    fs.chmodSync(target, f.mode);
  }
  return dir;
}

export function workPath(...parts) {
  return path.join(WORK, ...parts);
}
