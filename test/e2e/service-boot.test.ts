// End to end: the service builds an image whose overlay points the checkin back at the service itself;
// QEMU + OVMF/AAVMF boots what the service serves, fetched from its artifact URLs as a BMC or a
// firmware would: the UKI downloaded and run by the firmware, the ISO as a CD and as a disk streamed by
// QEMU's curl driver (Range reads), the UKI by UEFI HTTP Boot. Both UKI writers are booted on both
// architectures. The guest's PUT must show up in GET /api/v1/checkins/{id}, and the guest's own view of
// /proc/cmdline and of the overlay files (modes, owners, symlinks, dirOverrides) must match the request.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bootVm, serialConsole, type Arch, type BootMedia } from '../support/qemu.js';
import { api, b64, downloadArtifact, REPO, startInProcess, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

const GUEST_SERVICE = '10.0.2.100';
const LOG_DIR = path.join(REPO, 'test-results/e2e');

type Delivery = 'uki' | 'iso-cd' | 'iso-disk' | 'http-boot';

type Writer = 'direct' | 'objcopy';

// Each architecture boots a UKI of each writer; every delivery is booted once.
const SCENARIOS: Array<{ arch: Arch; delivery: Delivery; writer: Writer }> = [
  { arch: 'amd64', delivery: 'uki', writer: 'direct' },
  { arch: 'amd64', delivery: 'iso-cd', writer: 'objcopy' },
  { arch: 'amd64', delivery: 'iso-disk', writer: 'direct' },
  { arch: 'amd64', delivery: 'http-boot', writer: 'direct' },
  { arch: 'arm64', delivery: 'uki', writer: 'direct' },
  { arch: 'arm64', delivery: 'iso-cd', writer: 'objcopy' },
];

/** What the guest must report for each probed path: mode, uid, gid, type, link target. */
const EXPECTED_STATS: Record<string, string> = {
  '/root': '0755 0 0 dir -',
  '/root/.ssh': '0700 0 0 dir -',
  '/root/.ssh/authorized_keys': '0600 0 0 file -',
  // parents take the dirMode/dirUid/dirGid of the file that created them, all the way up
  '/opt': '0750 1000 1001 dir -',
  '/opt/uod': '0750 1000 1001 dir -',
  '/opt/uod/data': '0750 1000 1001 dir -',
  '/opt/uod/data/owned.txt': '0640 1000 1001 file -',
  '/opt/uod/data/tool': '4755 0 0 file -',
  '/usr/local/bin/python': '0777 0 0 symlink /usr/bin/python3',
  '/var/lib/cloud/seed/nocloud/checkin-url': '0644 0 0 file -',
  '/etc/ünïcödé-名前.conf': '0644 0 0 file -',
  '/empty': '0644 0 0 file -',
};

function buildRequest(arch: Arch, checkinId: string, cmdline: string) {
  return {
    kernel: `vmlinuz-${arch}`,
    initramfs: `initramfs-tiny-${arch}.img`,
    cmdline,
    architecture: arch,
    files: [
      { path: '/var/lib/cloud/seed/nocloud/checkin-url', contentBase64: b64(`http://${GUEST_SERVICE}/api/v1/checkins/${checkinId}`), mode: '0644' },
      { path: '/root/.ssh/authorized_keys', contentBase64: b64('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e2e test\n'), mode: '0600' },
      { path: '/opt/uod/data/owned.txt', contentBase64: b64('owned\n'), mode: '0640', uid: 1000, gid: 1001, dirMode: '0750', dirUid: 1000, dirGid: 1001 },
      { path: '/opt/uod/data/tool', contentBase64: b64('#!/bin/sh\n'), mode: '4755' },
      { path: '/usr/local/bin/python', linkTarget: '/usr/bin/python3' },
      { path: '/etc/ünïcödé-名前.conf', contentBase64: b64('utf-8 name\n') },
      { path: '/empty', contentBase64: '' },
      { path: '/etc/uod-probe.list', contentBase64: b64(Object.keys(EXPECTED_STATS).join('\n') + '\n') },
    ],
    dirOverrides: [{ path: '/root/.ssh', mode: '0700' }],
  };
}

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img', 'vmlinuz-arm64', 'initramfs-tiny-arm64.img');

describe('boot what the service built', () => {
  const services = {} as Record<Writer, InProcessService>;

  beforeAll(async () => {
    // One service per UKI writer, sharing nothing.
    services.direct = await startInProcess(['--uki-writer', 'direct']);
    services.objcopy = await startInProcess(['--uki-writer', 'objcopy']);
    fs.mkdirSync(LOG_DIR, { recursive: true });
  });
  afterAll(async () => {
    await Promise.all(Object.values(services).map((s) => s.close()));
  });

  test.each(SCENARIOS)('$arch $delivery ($writer writer): checkin arrives, cmdline and overlay metadata are as requested', async ({ arch, delivery, writer }) => {
    const svc = services[writer];
    const port = Number(new URL(svc.url).port);
    const checkinId = randomUUID();
    const cmdline = `console=${serialConsole(arch)} uod.case=${arch}-${delivery}-${writer} uod.timeout=150`;
    expect((await api(`${svc.url}/api/v1/checkins/${checkinId}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);

    const submitted = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: buildRequest(arch, checkinId, cmdline) });
    expect(submitted.status).toBe(202);
    const build = await waitForBuild(svc.url, submitted.body.id);
    expect(build.state, build.error).toBe('completed');

    const { ukiUrl, isoUrl } = build.artifacts as { ukiUrl: string; isoUrl: string };
    const media: BootMedia =
      delivery === 'uki' ? { kind: 'kernel', path: await downloadArtifact(ukiUrl, `uki-${arch}-${writer}`) }
      : delivery === 'iso-cd' ? { kind: 'cdrom', url: isoUrl }
      : delivery === 'iso-disk' ? { kind: 'disk', url: isoUrl }
      // the firmware fetches the UKI from the service's artifact URL (HEAD first, then GET)
      : { kind: 'http', url: `http://${GUEST_SERVICE}${new URL(ukiUrl).pathname}` };

    const vm = await bootVm({
      arch,
      media,
      guestfwd: [{ guestAddr: GUEST_SERVICE, guestPort: 80, hostPort: port }],
      timeoutMs: 170_000,
      serialLog: path.join(LOG_DIR, `service-${arch}-${delivery}.log`),
    });
    try {
      await vm.waitForLine(/UOD-(DONE|TIMEOUT)/, 170_000);
      const lines = vm.lines().map((l) => l.trim());
      expect(lines).toContain('UOD-DONE');
      expect(lines).toContain('UOD-CHECKIN: 204');

      // the kernel saw exactly the cmdline embedded in the UKI
      const seen = lines.find((l) => l.startsWith('UOD-CMDLINE: '));
      expect(seen?.slice('UOD-CMDLINE: '.length).trim()).toBe(cmdline);

      // every overlay path has the mode, owner, type and target that was requested
      const stats = Object.fromEntries(
        lines.filter((l) => l.startsWith('UOD-STAT: ')).map((l) => {
          const [p, ...rest] = l.slice('UOD-STAT: '.length).split(' ');
          return [p, rest.join(' ')];
        }),
      );
      expect(stats).toEqual(EXPECTED_STATS);

      const checkin = await api(`${svc.url}/api/v1/checkins/${checkinId}`);
      expect(checkin.status).toBe(200);
      expect(checkin.body.addresses).toContain('10.0.2.15');
    } finally {
      await vm.kill();
    }
  }, 240_000);
});
