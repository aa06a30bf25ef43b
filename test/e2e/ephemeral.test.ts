// End to end for the ephemeral OS (base-artifacts/ephemeral): the service builds a UKI from
// vmlinuz-amd64 + initramfs-amd64.img + a NoCloud overlay, QEMU + OVMF boots what the service serves
// on a machine with two NICs and three disks of known serials, and the tests talk to it as the
// orchestrator would. Inspection boots the ISO as a CD streamed from its artifact URL (GRUB
// chainloading the 70 MB UKI); provisioning boots the downloaded UKI directly.
// Inspection: no network-config, DHCP on every NIC, the checkin reaches the
// service's HTTPS listener (verified with the CA from the overlay), SSH by key only, instance-id and
// hw-inventory (validated against its JSON Schema).
// Provisioning: a static network-config matched by MAC; dhcp-discover and checkin stand aside; at the
// end an ACPI power button press (a BMC's Redfish GracefulShutdown) powers the machine off.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ARCH, BOOT_MS, buildEphemeral, checkHwInventory, GUEST_SERVICE, LOG_DIR, type Ssh, sshKey, sshTo } from '../support/ephemeral.js';
import { bootVm, type BootMedia, type RunningVm } from '../support/qemu.js';
import { freePort } from '../support/service-process.mjs';
import { api, b64, downloadArtifact, type InProcessService, startInProcess, tempDir } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { until as pollUntil } from '../support/until.js';

const run = promisify(execFile);

// The first NIC's MAC as test/support/qemu.ts assigns it (checked against vm.macs after boot): the
// provisioning network-config has to name it before the machine exists.
const FIRST_MAC = '52:54:00:75:6f:10';
const DISKS = [
  { kind: 'scsi-hd' as const, sizeMiB: 64, serial: 'SCSI-SER-0001', wwn: '0x5000c500a1b2c3d4' },
  { kind: 'nvme' as const, sizeMiB: 64, serial: 'NVME-SER-0002' },
  { kind: 'virtio-blk' as const, sizeMiB: 64, serial: 'VBLK-SER-0003' },
];
const SMBIOS_SERIAL = 'UOD-EPHEMERAL-0042';
// Power button to QEMU exit: a few seconds at low load (systemd stops every unit first).
const POWER_OFF_MS = 120_000;

/** Every 2 s: each probe is an SSH attempt or an API call about a machine that is still booting. */
const until = <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>) => pollUntil(what, timeoutMs, probe, 2000);

/** `valid_life_time` of an address without a lifetime (`valid_lft forever`): a static one. */
const FOREVER = 4294967295;

interface NetworkdLink {
  /** `ip -4 -j addr show dev IF`: `dynamic` (the kernel's "not permanent") and lifetimes per address */
  addresses: Array<{ local: string; prefixlen: number; dynamic?: boolean; valid_life_time: number }>;
  /** systemd-networkd's state file of the link, /run/systemd/netif/links/IFINDEX: NETWORK_FILE=, DHCP_LEASE=, ... */
  state: string;
  /** the .network file networkd applied to the link (NETWORK_FILE=) */
  networkFile: string;
}

/**
 * How an interface of the guest got its IPv4 addresses. systemd-networkd is the only DHCP client of
 * the image: an address it leases gets the lease's lifetime (so the kernel shows it `dynamic`, valid
 * for at most the lease time, 24 h from QEMU's user networking), and while it holds a lease the link's
 * state file names it (DHCP_LEASE=/run/systemd/netif/leases/IFINDEX). A static `Address=` is permanent.
 */
async function networkdLink(ssh: Ssh, ifname: string): Promise<NetworkdLink> {
  const state = `/run/systemd/netif/links/$(cat /sys/class/net/${ifname}/ifindex)`;
  const r = await ssh(`set -e; ip -4 -j addr show dev ${ifname}; echo ---; cat ${state}; echo ---; cat "$(sed -n 's/^NETWORK_FILE=//p' ${state})"`);
  expect(r.code, `${ifname}: ${r.stderr}`).toBe(0);
  const [addrJson, stateFile, networkFile] = r.stdout.split('---\n') as [string, string, string];
  const links = JSON.parse(addrJson) as Array<{ addr_info: NetworkdLink['addresses'] }>;
  return { addresses: links.flatMap((l) => l.addr_info), state: stateFile, networkFile };
}

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-amd64.img');

describe('ephemeral OS booted from what the service built', () => {
  let svc: InProcessService;
  let servicePort: number;
  let serviceTlsPort: number;
  let caPem: string;
  let key: string;
  let publicKey: string;

  beforeAll(async () => {
    // A self-signed certificate for the address the guest knows the service by: the guest's curl
    // verifies it with the CA file of the overlay (checkin-ca.pem).
    const tls = tempDir('tls');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', `/CN=${GUEST_SERVICE}`, '-addext', `subjectAltName=IP:${GUEST_SERVICE}`,
      '-keyout', path.join(tls, 'key.pem'), '-out', path.join(tls, 'cert.pem')]);
    caPem = fs.readFileSync(path.join(tls, 'cert.pem'), 'utf8');
    svc = await startInProcess(['--tls-listen', '127.0.0.1:0', '--tls-cert', path.join(tls, 'cert.pem'), '--tls-key', path.join(tls, 'key.pem')]);
    servicePort = Number(new URL(svc.url).port);
    serviceTlsPort = Number(new URL(svc.tlsUrl!).port);
    fs.mkdirSync(LOG_DIR, { recursive: true });
    key = await sshKey();
    publicKey = fs.readFileSync(`${key}.pub`, 'utf8').trim();
  });
  afterAll(() => svc?.close());

  /**
   * Builds through the API and boots the result from its artifact URL: the ISO as a CD streamed by
   * QEMU's curl driver (GRUB chainloads the UKI), or the UKI downloaded and run by the firmware.
   */
  async function buildAndBoot(name: string, delivery: 'iso-cd' | 'uki', files: object[], sshPort: number): Promise<RunningVm> {
    const artifacts = await buildEphemeral(svc.url, files);
    const media: BootMedia = delivery === 'uki'
      ? { kind: 'kernel', path: await downloadArtifact(artifacts.ukiUrl, `uki-${name}`) }
      : { kind: 'cdrom', url: artifacts.isoUrl };

    return bootVm({
      arch: ARCH,
      media,
      memoryMiB: 1536,
      cpus: 2,
      extraNics: 1,
      disks: DISKS,
      smbiosSerial: SMBIOS_SERIAL,
      guestfwd: [
        { guestAddr: GUEST_SERVICE, guestPort: 80, hostPort: servicePort },
        { guestAddr: GUEST_SERVICE, guestPort: 443, hostPort: serviceTlsPort },
      ],
      hostfwd: [{ hostPort: sshPort, guestPort: 22 }],
      timeoutMs: BOOT_MS + 120_000,
      serialLog: path.join(LOG_DIR, `ephemeral-${name}.log`),
    });
  }

  test('inspection: DHCP everywhere, HTTPS checkin, key-only SSH, instance-id and a schema-valid hw-inventory', async () => {
    const id = randomUUID();
    const sshPort = await freePort();
    expect((await api(`${svc.url}/api/v1/checkins/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);

    const vm = await buildAndBoot('inspection', 'iso-cd', [
      { path: '/var/lib/cloud/seed/nocloud/meta-data', contentBase64: b64(`instance-id: ${id}\nlocal-hostname: inspect-${id.slice(0, 8)}\n`), mode: '0644' },
      // the key arrives through user-data here, through /root/.ssh/authorized_keys in provisioning
      { path: '/var/lib/cloud/seed/nocloud/user-data', contentBase64: b64(`#cloud-config\nssh_authorized_keys:\n  - ${publicKey}\n`), mode: '0644' },
      { path: '/var/lib/cloud/seed/nocloud/checkin-url', contentBase64: b64(`https://${GUEST_SERVICE}/api/v1/checkins/${id}\n`), mode: '0644' },
      { path: '/var/lib/cloud/seed/nocloud/checkin-ca.pem', contentBase64: b64(caPem), mode: '0644' },
      { path: '/usr/local/bin/python', linkTarget: '/usr/bin/python3' },
    ], sshPort);
    try {
      const addresses = await until('checkin with addresses', BOOT_MS, async () => {
        const res = await api(`${svc.url}/api/v1/checkins/${id}`);
        return res.status === 200 && res.body.addresses.length > 0 ? (res.body.addresses as string[]) : undefined;
      });
      // both NICs got a lease: 10.0.2.15 on the first user network, 10.0.3.15 on the second
      expect([...addresses].sort()).toEqual(['10.0.2.15', '10.0.3.15']);
      expect(vm.macs[0]).toBe(FIRST_MAC);

      const ssh = sshTo(sshPort, key, { timeoutMs: 60_000 });
      // addresses are reported only once sshd runs (checkin.service is ordered after ssh.service)
      const instance = await ssh('cat /var/lib/cloud/data/instance-id');
      expect(instance.code, instance.stderr).toBe(0);
      expect(instance.stdout.trim()).toBe(id);

      // Both addresses are leases of systemd-networkd's DHCP client, configured by dhcp-discover's file:
      // what the provisioning test's static address must not look like.
      const leased = JSON.parse((await ssh('ip -4 -j addr show')).stdout) as Array<{ ifname: string; addr_info: Array<{ local: string }> }>;
      for (const address of ['10.0.2.15', '10.0.3.15']) {
        const ifname = leased.find((l) => l.addr_info.some((a) => a.local === address))?.ifname;
        expect(ifname, `the interface with ${address}`).toBeDefined();
        const link = await networkdLink(ssh, ifname!);
        const info = link.addresses.find((a) => a.local === address)!;
        expect(info.dynamic, `${address} on ${ifname}`).toBe(true);
        expect(info.valid_life_time).toBeLessThanOrEqual(86_400);
        expect(link.state).toMatch(/^DHCP_LEASE=\/run\/systemd\/netif\/leases\/\d+$/m);
        expect(link.state).toMatch(/^NETWORK_FILE=\/etc\/systemd\/network\/90-dhcp-discover\.network$/m);
        expect(link.networkFile).toMatch(/^DHCP=ipv4$/m);
      }

      const password = await ssh('true', ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive']);
      expect(password.code).toBe(255);
      expect(password.stderr).toMatch(/Permission denied \(publickey\)/);

      // the in-RAM root was remounted with room for downloads: 75% of the RAM instead of the kernel's 50%
      const room = await ssh("df -B1 --output=size / | tail -n 1; awk '/^MemTotal:/ { print $2 * 1024 }' /proc/meminfo");
      const [rootBytes, memBytes] = room.stdout.trim().split('\n').map(Number);
      expect(rootBytes! / memBytes!).toBeGreaterThan(0.7);

      const inv = await ssh(`hw-inventory ${id}`);
      expect(inv.code, inv.stderr).toBe(0);
      const inventory = JSON.parse(inv.stdout);
      const schema = checkHwInventory(inventory);
      expect(schema.valid, schema.errors).toBe(true);

      expect(inventory.instance_id).toBe(id);
      expect(inventory.system.serial).toBe(SMBIOS_SERIAL);
      expect(inventory.firmware.uefi).toBe(true);
      expect(inventory.cpus.threads).toBe(2);
      const disks = Object.fromEntries(inventory.disks.map((d: any) => [d.serial, d]));
      for (const d of DISKS) expect(disks[d.serial], `disk ${d.serial}`).toBeDefined();
      expect(disks['SCSI-SER-0001'].wwn).toBe('0x5000c500a1b2c3d4');
      expect(disks['SCSI-SER-0001'].by_id).toContain('wwn-0x5000c500a1b2c3d4');
      expect(disks['VBLK-SER-0003'].by_id).toContain('virtio-VBLK-SER-0003');
      expect(disks['NVME-SER-0002'].by_id.some((l: string) => l.includes('NVME-SER-0002'))).toBe(true);
      const nics = inventory.nics.map((n: any) => [n.mac, n.driver, n.link]);
      expect(nics).toEqual(vm.macs.map((mac) => [mac, 'virtio_net', true]));
      expect(inventory.nics.every((n: any) => /^0000:00:[0-9a-f]{2}\.0$/.test(n.pci_address))).toBe(true);

      const console = vm.output();
      // cloud-init accepted its configuration and the seed (it warns on the console otherwise)
      expect(console).not.toMatch(/\[WARNING\]|Traceback/);
      expect(console).toMatch(/dhcp-discover: no network-config: DHCP on every physical NIC/);
      expect(console).toContain(`checkin: reporting IPv4 addresses to https://${GUEST_SERVICE}/api/v1/checkins/${id} (CA /var/lib/cloud/seed/nocloud/checkin-ca.pem)`);
      expect(console).toMatch(/checkin: PUT \{"addresses":\[[^\]]*"10\.0\.2\.15"[^\]]*\]\} -> 204/);
    } finally {
      await vm.kill();
    }
  }, BOOT_MS + 300_000);

  test('provisioning: static address from network-config, no DHCP job, no checkin, power button powers off', async () => {
    const id = randomUUID();
    const sshPort = await freePort();
    // User networking hands out 10.0.2.15 and forwards to it: the static address must be that one.
    const networkConfig = [
      'version: 2',
      'ethernets:',
      '  primary:',
      '    match:',
      `      macaddress: "${FIRST_MAC}"`,
      '    set-name: prov0',
      '    addresses: [10.0.2.15/24]',
      '    routes:',
      '      - to: default',
      '        via: 10.0.2.2',
      '    nameservers:',
      '      addresses: [10.0.2.3]',
      '',
    ].join('\n');

    const vm = await buildAndBoot('provisioning', 'uki', [
      { path: '/var/lib/cloud/seed/nocloud/meta-data', contentBase64: b64(`instance-id: ${id}\nlocal-hostname: prov-${id.slice(0, 8)}\n`), mode: '0644' },
      { path: '/var/lib/cloud/seed/nocloud/user-data', contentBase64: b64('#cloud-config\n{}\n'), mode: '0644' },
      { path: '/var/lib/cloud/seed/nocloud/network-config', contentBase64: b64(networkConfig), mode: '0644' },
      { path: '/root/.ssh/authorized_keys', contentBase64: b64(`${publicKey}\n`), mode: '0600' },
    ], sshPort);
    try {
      expect(vm.macs[0]).toBe(FIRST_MAC);
      const ssh = sshTo(sshPort, key, { timeoutMs: 60_000 });
      const instance = await until('SSH on the static address', BOOT_MS, async () => {
        const r = await ssh('cat /var/lib/cloud/data/instance-id');
        return r.code === 0 ? r.stdout.trim() : undefined;
      });
      expect(instance).toBe(id);

      const state = await ssh('ip -4 -j addr show; echo ---; ip -4 route show default; echo ---; ls /etc/systemd/network');
      expect(state.code, state.stderr).toBe(0);
      const [addrJson, route, networkFiles] = state.stdout.split('---\n');
      const links = JSON.parse(addrJson!) as Array<{ ifname: string; address?: string; addr_info: Array<{ local: string }> }>;
      const configured = Object.fromEntries(links.map((l) => [l.ifname, l.addr_info.map((a) => a.local)]));
      expect(configured.prov0).toEqual(['10.0.2.15']);
      // the second NIC is not in the network-config and nobody else configures it
      expect(Object.values(configured).flat().sort()).toEqual(['10.0.2.15', '127.0.0.1']);
      expect(route).toMatch(/^default via 10\.0\.2\.2 dev prov0/);
      expect(networkFiles).not.toMatch(/dhcp-discover/);

      // Static, not leased. User networking's DHCP server would hand out this very address, gateway
      // and DNS server, so the checks above cannot tell a static address from a DHCP one; these can.
      // The address is permanent (a lease would make it `dynamic`, valid for at most 24 h), networkd
      // holds no DHCPv4 lease for prov0 (no DHCP_LEASE= in its state file), and the .network netplan
      // wrote for it, the one networkd applied, has the address and no DHCP= turning its client on.
      const prov0 = await networkdLink(ssh, 'prov0');
      expect(prov0.addresses).toHaveLength(1);
      expect(prov0.addresses[0]).toMatchObject({ local: '10.0.2.15', prefixlen: 24, valid_life_time: FOREVER });
      expect(prov0.addresses[0]!.dynamic, 'prov0 10.0.2.15 is dynamic: it has a lifetime, as a DHCP lease does').toBeUndefined();
      expect(prov0.state).not.toMatch(/^DHCP_LEASE=/m);
      expect(prov0.state).toMatch(/^NETWORK_FILE=\/run\/systemd\/network\/[^/\n]*netplan[^/\n]*\.network$/m);
      expect(prov0.networkFile).toMatch(/^Address=10\.0\.2\.15\/24$/m);
      expect(prov0.networkFile).not.toMatch(/^DHCP=(?!no\s*$)/m);

      const console = vm.output();
      expect(console).not.toMatch(/\[WARNING\]|Traceback/);
      expect(console).toMatch(/dhcp-discover: network-config present, nothing to do/);
      await vm.waitForLine(/checkin: no \/var\/lib\/cloud\/seed\/nocloud\/checkin-url, nothing to do/, 60_000);

      // GracefulShutdown: the ACPI power button (button + evdev modules) reaches systemd-logind,
      // which powers off; QEMU then exits by itself with 0.
      await vm.qmp('system_powerdown');
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([vm.exited, new Promise<'running'>((r) => { timer = setTimeout(() => r('running'), POWER_OFF_MS); })]);
      clearTimeout(timer);
      expect(exit, `QEMU still ran ${POWER_OFF_MS} ms after the power button\n${vm.output().split('\n').slice(-25).join('\n')}`).toBe(0);
      expect(vm.output()).toMatch(/reboot: Power down/);
    } finally {
      await vm.kill();
    }
  }, BOOT_MS + 300_000);
});
