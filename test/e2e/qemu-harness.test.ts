// Proves the QEMU harness and the tiny test initramfs: a UKI built from the base kernel + tiny
// initramfs + a checkin overlay boots under OVMF/AAVMF, shows its embedded cmdline and PUTs its
// addresses to a host server reached through guestfwd.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bootVm, liveProcessesInGroup, serialConsole, type Arch, type RunningVm } from '../support/qemu.js';

const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const baseOut = join(repo, 'base-artifacts/out');
const logDir = join(repo, 'test-results/e2e');

const STUBS: Record<Arch, { stub: string; objcopy: string; objdump: string }> = {
  amd64: { stub: '/usr/lib/systemd/boot/efi/linuxx64.efi.stub', objcopy: 'objcopy', objdump: 'objdump' },
  arm64: {
    stub: '/usr/lib/systemd/boot/efi/linuxaa64.efi.stub',
    objcopy: 'aarch64-linux-gnu-objcopy',
    objdump: 'aarch64-linux-gnu-objdump',
  },
};

// Minimal UKI: new sections after the stub's last one, each aligned to the stub's SectionAlignment,
// .linux last because the kernel decompresses in place.
async function buildUki(arch: Arch, kernel: string, initrd: string, cmdline: string, dir: string): Promise<string> {
  const { stub, objcopy, objdump } = STUBS[arch];
  const headers = (await run(objdump, ['-h', stub])).stdout;
  const align = parseInt(/SectionAlignment\s+([0-9a-f]+)/i.exec((await run(objdump, ['-p', stub])).stdout)![1]!, 16);
  let end = 0;
  for (const m of headers.matchAll(/^\s*\d+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)/gm)) {
    end = Math.max(end, parseInt(m[2]!, 16) + parseInt(m[1]!, 16));
  }
  const up = (n: number): number => Math.ceil(n / align) * align;

  await writeFile(join(dir, 'osrel'), 'ID=uki-on-demand-test\n');
  await writeFile(join(dir, 'cmdline'), cmdline);
  const sections: Array<[string, string, string]> = [
    ['.osrel', join(dir, 'osrel'), 'data,readonly'],
    ['.cmdline', join(dir, 'cmdline'), 'data,readonly'],
    ['.initrd', initrd, 'data,readonly'],
    ['.linux', kernel, 'code,readonly'],
  ];
  const args: string[] = [];
  let vma = up(end);
  for (const [name, file, flags] of sections) {
    args.push('--add-section', `${name}=${file}`, '--change-section-vma', `${name}=0x${vma.toString(16)}`,
      '--set-section-flags', `${name}=${flags}`);
    vma = up(vma + (await stat(file)).size);
  }
  const out = join(dir, `uki-${arch}.efi`);
  await run(objcopy, [...args, stub, out]);
  return out;
}

// base ‖ pad to 4 ‖ gzip newc overlay, the overlay listing every parent directory.
async function initrdWithOverlay(base: string, files: Record<string, { content: string; mode: number }>, dir: string): Promise<string> {
  const tree = join(dir, 'overlay');
  for (const [path, { content, mode }] of Object.entries(files)) {
    await mkdir(dirname(join(tree, path)), { recursive: true });
    await writeFile(join(tree, path), content);
    await chmod(join(tree, path), mode);
  }
  const overlay = join(dir, 'overlay.cpio.gz');
  await run('sh', ['-c', 'cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -n > "$2"', 'sh', tree, overlay]);
  const out = join(dir, 'initrd.img');
  await copyFile(base, out);
  const size = (await stat(out)).size;
  await appendFile(out, Buffer.alloc((4 - (size % 4)) % 4));
  await appendFile(out, await readFile(overlay));
  return out;
}

interface Checkin {
  method: string;
  url: string;
  body: string;
  at: number;
}

// Answers the first `failures` PUTs with 503 so that the guest's retry loop is exercised.
async function startCheckinServer(failures: number): Promise<{ port: number; requests: Checkin[]; accepted: Promise<Checkin>; close(): Promise<void> }> {
  const requests: Checkin[] = [];
  let accept!: (c: Checkin) => void;
  const accepted = new Promise<Checkin>((r) => (accept = r));
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const c = { method: req.method ?? '', url: req.url ?? '', body, at: performance.now() };
      requests.push(c);
      if (requests.length <= failures) {
        res.statusCode = 503;
        res.end();
        return;
      }
      res.statusCode = 204;
      res.end();
      accept(c);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    accepted,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const ARCHES: Array<{ arch: Arch; failures: number; timeoutMs: number }> = [
  { arch: 'amd64', failures: 1, timeoutMs: 120_000 },
  { arch: 'arm64', failures: 0, timeoutMs: 150_000 },
];

for (const { arch, failures, timeoutMs } of ARCHES) {
  const kernel = join(baseOut, `vmlinuz-${arch}`);
  const tiny = join(baseOut, `initramfs-tiny-${arch}.img`);
  // The global setup has checked that both exist.
  describe(`tiny image on ${arch}`, () => {
    let dir: string;
    let vm: RunningVm | undefined;
    let server: Awaited<ReturnType<typeof startCheckinServer>> | undefined;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `uod-e2e-${arch}-`));
      await mkdir(logDir, { recursive: true });
    });
    afterEach(async () => {
      await vm?.kill();
      await server?.close();
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('boots the UKI, shows the embedded cmdline and checks in through guestfwd', async () => {
      server = await startCheckinServer(failures);
      const token = randomBytes(6).toString('hex');
      const cmdline = `console=${serialConsole(arch)} uod.test=${token}`;
      const seedUrl = `http://10.0.2.100/api/v1/checkins/${token}`;
      const initrd = await initrdWithOverlay(tiny, {
        'var/lib/cloud/seed/nocloud/checkin-url': { content: `${seedUrl}\n`, mode: 0o600 },
        'etc/uod-probe.list': { content: '/var/lib/cloud/seed/nocloud/checkin-url\n/var/lib/cloud/seed/nocloud\n', mode: 0o644 },
      }, dir);
      const uki = await buildUki(arch, kernel, initrd, cmdline, dir);

      vm = await bootVm({
        arch,
        media: { kind: 'kernel', path: uki },
        memoryMiB: 512,
        guestfwd: [{ guestAddr: '10.0.2.100', guestPort: 80, hostPort: server.port }],
        timeoutMs,
        serialLog: join(logDir, `qemu-harness-${arch}.serial.log`),
      });
      const started = vm.startedAt;

      const checkin = await Promise.race([
        server.accepted,
        vm.exited.then((code) => {
          throw new Error(`QEMU exited (${code}) before the checkin\n${vm!.output().slice(-3000)}`);
        }),
      ]);
      const seconds = (checkin.at - started) / 1000;
      console.log(`[qemu-harness] ${arch}: QEMU start to checkin ${seconds.toFixed(1)} s`);

      expect(checkin.method).toBe('PUT');
      expect(checkin.url).toBe(`/api/v1/checkins/${token}`);
      const body = JSON.parse(checkin.body) as { addresses: string[] };
      expect(body.addresses).toContain('10.0.2.15');
      for (const a of body.addresses) expect(a).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(server.requests).toHaveLength(failures + 1);

      expect(await vm.waitForLine(/^UOD-CMDLINE: /, 5_000)).toBe(`UOD-CMDLINE: ${cmdline}`);
      expect(await vm.waitForLine(/^UOD-STAT: \/var\/lib\/cloud\/seed\/nocloud\/checkin-url /, 5_000))
        .toBe('UOD-STAT: /var/lib/cloud/seed/nocloud/checkin-url 0600 0 0 file -');
      expect(await vm.waitForLine(/^UOD-STAT: \/var\/lib\/cloud\/seed\/nocloud /, 5_000))
        .toBe('UOD-STAT: /var/lib/cloud/seed/nocloud 0755 0 0 dir -');
      if (failures > 0) await vm.waitForLine(/^UOD-CHECKIN: 503$/, 5_000);
      await vm.waitForLine(/^UOD-DONE$/, 30_000);
      expect(await vm.exited).toBe(0);
      console.log(`[qemu-harness] ${arch}: QEMU start to power-off ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }, timeoutMs + 30_000);
  });
}

describe('qemu harness failure handling', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uod-e2e-harness-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects waitForLine when QEMU exits and reports its exit code', async () => {
    const vm = await bootVm({
      arch: 'amd64',
      media: { kind: 'kernel', path: join(dir, 'does-not-exist.efi') },
      timeoutMs: 20_000,
      serialLog: join(dir, 'exit.log'),
    });
    await expect(vm.waitForLine(/^UOD-DONE$/, 15_000)).rejects.toThrow(/exited.*does-not-exist/s);
    expect(await vm.exited).toBe(1);
  });

  it('kills QEMU and its process group when timeoutMs expires', async () => {
    // No boot media: the firmware keeps looking for something to boot until the VM is killed.
    const vm = await bootVm({
      arch: 'amd64',
      media: { kind: 'disk', path: '/dev/null' },
      restrict: true,
      timeoutMs: 3_000,
      serialLog: join(dir, 'timeout.log'),
    });
    expect(await vm.exited).toBeNull();
    expect(vm.timedOut()).toBe(true);
    expect(liveProcessesInGroup(vm.pgid)).toEqual([]);
  });
});
