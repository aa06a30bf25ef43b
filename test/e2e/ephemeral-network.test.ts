// End to end for the ephemeral OS on a rack-like network: the network-config example of
// base-artifacts/ephemeral/README.md ("Bonds and VLANs"), as operators copy it, is put in the NoCloud
// seed of a build of the real service, and the UKI it serves boots under QEMU + OVMF with five NICs:
//
//   mgmt   (harness NIC 0, user network 10.0.2.0/24)  DHCP from the network-config; checkin goes here
//   spare  (harness NIC 1, user network 10.0.3.0/24)  not in the network-config: must stay unconfigured
//   bond-a, bond-b  active-backup bond0, 10.0.5.15/24 untagged, VLAN 100 on top (192.0.2.10/24, routes)
//   trunk  plain NIC with VLAN 200 (203.0.113.10/24)
//
// bond-a, bond-b and trunk sit on one QEMU hub together with a user network (10.0.5.0/24, SSH is
// forwarded to the bond's 10.0.5.15 only) and a UDP socket to a VLAN peer (vlan-peer.ts) that plays
// the tagged side of the switch: routers on VLAN 100 and 200 answering ARP and ping. QEMU's user
// network drops tagged frames, so tagged traffic is proven against the peer: pings through the VLAN's
// static routes come back, and the peer records the VLAN id, the gateway and the source MAC of each.
// With both slaves on one segment, active-backup fail-over is real: QMP set_link takes the active
// slave's link away, SSH (through the user network) keeps working over the other slave.
import { randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ARCH, BOOT_MS, buildEphemeral, checkHwInventory, GUEST_SERVICE, LOG_DIR, sshKey, sshTo, type Ssh } from '../support/ephemeral.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { bootVm, type RunningVm } from '../support/qemu.js';
import { freePort } from '../support/service-process.mjs';
import { api, b64, downloadArtifact, type InProcessService, REPO, startInProcess } from '../support/service.js';
import { until } from '../support/until.js';
import { startVlanPeer, type VlanPeer } from './vlan-peer.js';

const README = path.join(REPO, 'base-artifacts/ephemeral/README.md');
// The MACs of the README example. The harness gives its NICs 52:54:00:75:6f:1x (checked after boot).
const MGMT_MAC = '52:54:00:75:6f:10';
const SPARE_MAC = '52:54:00:75:6f:11';
const BOND_A_MAC = '52:54:00:75:6f:20';
const BOND_B_MAC = '52:54:00:75:6f:21';
const TRUNK_MAC = '52:54:00:75:6f:22';
const ROUTERS = [
  { vid: 100, ip: '192.0.2.1', mac: '02:00:00:00:64:01' },
  { vid: 100, ip: '192.0.2.254', mac: '02:00:00:00:64:fe' },
  { vid: 200, ip: '203.0.113.1', mac: '02:00:00:00:c8:01' },
];

/** The first ```yaml block of the README's "Bonds and VLANs" section: the example operators copy. */
function readmeNetworkConfig(): string {
  const text = fs.readFileSync(README, 'utf8');
  const at = text.indexOf('### Bonds and VLANs');
  const block = /```yaml\n([\s\S]*?)```/.exec(text.slice(at));
  if (at < 0 || !block) throw new Error(`${README}: no yaml block in a "### Bonds and VLANs" section`);
  return block[1]!;
}

async function freeUdpPort(): Promise<number> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  const { port } = sock.address();
  await new Promise<void>((resolve) => sock.close(() => resolve()));
  return port;
}

/** The hub of the bond's NICs, the trunk NIC, the user network SSH comes through and the VLAN peer. */
function hubArgs(sshPort: number, peerPort: number, localUdpPort: number): string[] {
  const nic = (id: string, mac: string, extra = ''): string[] => [
    '-netdev', `hubport,id=${id}-port,hubid=1`,
    '-device', `virtio-net-pci,id=${id},netdev=${id}-port,mac=${mac},romfile=${extra}`,
  ];
  return [
    '-netdev', `user,id=lan,net=10.0.5.0/24,restrict=on,hostfwd=tcp:127.0.0.1:${sshPort}-10.0.5.15:22`,
    '-netdev', 'hubport,id=lan-port,hubid=1,netdev=lan',
    '-netdev', `socket,id=peer,udp=127.0.0.1:${peerPort},localaddr=127.0.0.1:${localUdpPort}`,
    '-netdev', 'hubport,id=peer-port,hubid=1,netdev=peer',
    // the bond's NICs report 10 Gb/s (virtio-net's speed property); the trunk NIC reports no speed
    ...nic('bond-a', BOND_A_MAC, ',speed=10000,duplex=full'),
    ...nic('bond-b', BOND_B_MAC, ',speed=10000,duplex=full'),
    ...nic('trunk', TRUNK_MAC),
  ];
}

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-amd64.img');

describe('ephemeral OS on a bonded, tagged network: the README network-config example', () => {
  let svc: InProcessService;
  let peer: VlanPeer;
  let vm: RunningVm;
  let ssh: Ssh;
  let id: string;
  let inventory: any;
  const nicName: Record<string, string> = {};

  beforeAll(async () => {
    svc = await startInProcess();
    peer = await startVlanPeer(ROUTERS);
    fs.mkdirSync(LOG_DIR, { recursive: true });
    const key = await sshKey();
    const sshPort = await freePort();
    ssh = sshTo(sshPort, key, { timeoutMs: 90_000 });

    id = randomUUID();
    expect((await api(`${svc.url}/api/v1/checkins/${id}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    const seed = '/var/lib/cloud/seed/nocloud';
    const artifacts = await buildEphemeral(svc.url, [
      { path: `${seed}/meta-data`, contentBase64: b64(`instance-id: ${id}\nlocal-hostname: rack-${id.slice(0, 8)}\n`) },
      { path: `${seed}/user-data`, contentBase64: b64('#cloud-config\n{}\n') },
      { path: `${seed}/network-config`, contentBase64: b64(readmeNetworkConfig()) },
      { path: `${seed}/checkin-url`, contentBase64: b64(`http://${GUEST_SERVICE}/api/v1/checkins/${id}\n`) },
      { path: '/root/.ssh/authorized_keys', contentBase64: b64(fs.readFileSync(`${key}.pub`)), mode: '0600' },
    ]);
    const uki = await downloadArtifact(artifacts.ukiUrl, 'uki-network');

    vm = await bootVm({
      arch: ARCH,
      media: { kind: 'kernel', path: uki },
      memoryMiB: 1536,
      cpus: 2,
      extraNics: 1,
      guestfwd: [{ guestAddr: GUEST_SERVICE, guestPort: 80, hostPort: Number(new URL(svc.url).port) }],
      extraArgs: hubArgs(sshPort, peer.port, await freeUdpPort()),
      timeoutMs: BOOT_MS + 420_000,
      serialLog: path.join(LOG_DIR, 'ephemeral-network.log'),
    });
    expect(vm.macs).toEqual([MGMT_MAC, SPARE_MAC]);
    // SSH reaches 10.0.5.15 through the user network of the hub: that is the bond, nothing else.
    await until('SSH to the bond address', BOOT_MS, async () => ((await ssh('true')).code === 0 ? true : undefined), 3000);
    const inv = await ssh(`hw-inventory ${id}`);
    expect(inv.code, inv.stderr).toBe(0);
    inventory = JSON.parse(inv.stdout);
    for (const n of inventory.nics) nicName[n.permanent_mac] = n.name;
  }, BOOT_MS + 360_000);

  afterAll(async () => {
    await vm?.kill();
    await peer?.close();
    await svc?.close();
  });

  test('cloud-init renders the bond and the VLANs through netplan; dhcp-discover stands aside', async () => {
    const files = await ssh('ls /run/systemd/network; ls /etc/systemd/network; cat /run/systemd/network/10-netplan-mgmt.network');
    expect(files.code, files.stderr).toBe(0);
    for (const f of ['10-netplan-bond0.netdev', '10-netplan-bond0.100.netdev', '10-netplan-trunk0.200.netdev']) expect(files.stdout).toContain(f);
    expect(files.stdout).not.toContain('dhcp-discover');
    // leases follow the hardware (the machine-id, and so the DUID, is new at every boot)
    expect(files.stdout).toMatch(/^ClientIdentifier=mac$/m);
    const console = vm.output();
    expect(console).toMatch(/dhcp-discover: network-config present, nothing to do/);
    expect(console).not.toMatch(/\[WARNING\]|Traceback/);
  });

  test('bond0 is an active-backup bond of both NICs, the primary active, with VLAN 100 on it', async () => {
    const bonding = await ssh('cat /proc/net/bonding/bond0');
    expect(bonding.code, bonding.stderr).toBe(0);
    const [a, b] = [nicName[BOND_A_MAC]!, nicName[BOND_B_MAC]!];
    expect(bonding.stdout).toMatch(/^Bonding Mode: fault-tolerance \(active-backup\)$/m);
    expect(bonding.stdout).toContain(`Primary Slave: ${a} (primary_reselect always)`);
    expect(bonding.stdout).toContain(`Currently Active Slave: ${a}`);
    expect(bonding.stdout).toMatch(/^MII Polling Interval \(ms\): 100$/m);
    for (const [name, mac] of [[a, BOND_A_MAC], [b, BOND_B_MAC]]) {
      expect(bonding.stdout).toMatch(new RegExp(`Slave Interface: ${name}\\nMII Status: up\\nSpeed: 10000 Mbps\\nDuplex: full\\n[\\s\\S]*?Permanent HW addr: ${mac}`));
    }

    const links = await ssh('ip -d link show bond0.100; ip -d link show trunk0.200; ip -4 -j addr show');
    expect(links.code, links.stderr).toBe(0);
    expect(links.stdout).toMatch(/bond0\.100@bond0: .*\n.*\n\s+vlan protocol 802\.1Q id 100 /);
    expect(links.stdout).toMatch(/trunk0\.200@trunk0: .*\n.*\n\s+vlan protocol 802\.1Q id 200 /);
    const addrs = JSON.parse(links.stdout.slice(links.stdout.indexOf('[{'))) as Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>;
    const v4 = Object.fromEntries(addrs.filter((l) => l.addr_info.length).map((l) => [l.ifname, l.addr_info.map((x) => `${x.local}/${x.prefixlen}`)]));
    expect(v4).toEqual({
      lo: ['127.0.0.1/8'],
      mgmt0: ['10.0.2.15/24'],
      bond0: ['10.0.5.15/24'],
      'bond0.100': ['192.0.2.10/24'],
      'trunk0.200': ['203.0.113.10/24'],
    });
  });

  test('tagged traffic: the static routes of VLAN 100 and the address on VLAN 200 reach their gateways', async () => {
    const routes = await ssh('ip -4 route show default; ip route get 198.51.100.7; ip route get 198.18.0.1; ip route get 203.0.113.1');
    expect(routes.code, routes.stderr).toBe(0);
    expect(routes.stdout).toMatch(/^default via 192\.0\.2\.1 dev bond0\.100 proto static/m);
    expect(routes.stdout).toMatch(/^198\.51\.100\.7 via 192\.0\.2\.254 dev bond0\.100 src 192\.0\.2\.10/m);
    expect(routes.stdout).toMatch(/^198\.18\.0\.1 via 192\.0\.2\.1 dev bond0\.100 src 192\.0\.2\.10/m);
    expect(routes.stdout).toMatch(/^203\.0\.113\.1 dev trunk0\.200 src 203\.0\.113\.10/m);

    const pings = await ssh('for ip in 192.0.2.1 198.51.100.7 198.18.0.1 203.0.113.1; do ping -n -q -c 2 -W 5 $ip >/dev/null && echo "$ip ok" || echo "$ip lost"; done');
    expect(pings.stdout.trim().split('\n')).toEqual(['192.0.2.1 ok', '198.51.100.7 ok', '198.18.0.1 ok', '203.0.113.1 ok']);

    const bondMac = inventory.bonds[0].mac;
    const seen = (dst: string) => peer.echoes().filter((e) => e.dst === dst).map(({ vid, router, src, srcMac }) => ({ vid, router, src, srcMac }));
    expect(seen('192.0.2.1')[0]).toEqual({ vid: 100, router: '192.0.2.1', src: '192.0.2.10', srcMac: bondMac });
    expect(seen('198.51.100.7')[0]).toEqual({ vid: 100, router: '192.0.2.254', src: '192.0.2.10', srcMac: bondMac });
    expect(seen('198.18.0.1')[0]).toEqual({ vid: 100, router: '192.0.2.1', src: '192.0.2.10', srcMac: bondMac });
    expect(seen('203.0.113.1')[0]).toEqual({ vid: 200, router: '203.0.113.1', src: '203.0.113.10', srcMac: TRUNK_MAC });
    // each VLAN leaves through its own parent only
    const tagged = peer.tagged();
    expect(new Set(tagged.filter((t) => t.vid === 100).map((t) => t.srcMac))).toEqual(new Set([bondMac]));
    expect(new Set(tagged.filter((t) => t.vid === 200).map((t) => t.srcMac))).toEqual(new Set([TRUNK_MAC]));
  });

  test('hw-inventory reports bond and VLAN membership, speeds and drivers, valid against the schema', async () => {
    const schema = checkHwInventory(inventory);
    expect(schema.valid, schema.errors).toBe(true);

    const ipv4 = (addresses: string[]): string[] => addresses.filter((x) => !x.includes(':'));
    const [a, b, trunk, mgmt, spare] = [BOND_A_MAC, BOND_B_MAC, TRUNK_MAC, MGMT_MAC, SPARE_MAC].map((mac) => inventory.nics.find((n: any) => n.permanent_mac === mac));
    expect(inventory.nics).toHaveLength(5);
    for (const n of inventory.nics) expect(n.driver).toBe('virtio_net');
    expect(a).toMatchObject({ master: 'bond0', bond_state: 'active', speed_mbps: 10000, duplex: 'full', vlans: [], addresses: [] });
    expect(b).toMatchObject({ master: 'bond0', bond_state: 'backup', speed_mbps: 10000, vlans: [], addresses: [] });
    expect(trunk).toMatchObject({ name: 'trunk0', master: null, bond_state: null, speed_mbps: null, vlans: [{ name: 'trunk0.200', id: 200 }] });
    expect(mgmt).toMatchObject({ name: 'mgmt0', master: null, speed_mbps: null, vlans: [] });
    expect(ipv4(mgmt.addresses)).toEqual(['10.0.2.15/24']);
    expect(spare).toMatchObject({ master: null, vlans: [] });
    expect(ipv4(spare.addresses)).toEqual([]);

    // ports are listed in the order they were enslaved, which is the order networkd saw them appear
    expect([...inventory.bonds[0].slaves].sort()).toEqual([a.name, b.name].sort());
    expect(inventory.bonds).toEqual([expect.objectContaining({
      name: 'bond0', mode: 'active-backup', active_slave: a.name, primary: a.name,
      miimon_ms: 100, xmit_hash_policy: null, lacp: null, speed_mbps: 10000, vlans: [{ name: 'bond0.100', id: 100 }],
    })]);
    expect(ipv4(inventory.bonds[0].addresses)).toEqual(['10.0.5.15/24']);
    expect(inventory.vlans.map((v: any) => [v.name, v.id, v.parent, v.protocol, ipv4(v.addresses)])).toEqual([
      ['bond0.100', 100, 'bond0', '802.1Q', ['192.0.2.10/24']],
      ['trunk0.200', 200, 'trunk0', '802.1Q', ['203.0.113.10/24']],
    ]);
  });

  test('checkin reports every IPv4 address: DHCP on mgmt0, the bond and both VLANs', async () => {
    const addresses = await until('checkin with addresses', 120_000, async () => {
      const res = await api(`${svc.url}/api/v1/checkins/${id}`);
      return res.status === 200 && res.body.addresses.length > 0 ? (res.body.addresses as string[]) : undefined;
    });
    expect([...addresses].sort()).toEqual(['10.0.2.15', '10.0.5.15', '192.0.2.10', '203.0.113.10']);
  });

  test('fail-over: without the active slave\'s link, the backup carries SSH and VLAN 100; the primary takes over again', async () => {
    const [a, b] = [nicName[BOND_A_MAC]!, nicName[BOND_B_MAC]!];
    const active = async (): Promise<string | undefined> => {
      const r = await ssh('cat /sys/class/net/bond0/bonding/active_slave');
      return r.code === 0 ? r.stdout.trim() : undefined;
    };
    await vm.qmp('set_link', { name: 'bond-a', up: false });
    // every probe runs over SSH through the hub: with bond-a's link down in QEMU, only bond-b carries it
    await until(`active slave ${b}`, 60_000, async () => ((await active()) === b ? true : undefined), 2000);
    const after = await ssh(`cat /proc/net/bonding/bond0; ping -n -q -c 2 -W 5 192.0.2.1 >/dev/null && echo vlan-ok`);
    expect(after.stdout).toContain(`Currently Active Slave: ${b}`);
    expect(after.stdout).toMatch(new RegExp(`Slave Interface: ${a}\\nMII Status: down`));
    expect(after.stdout).toContain('vlan-ok');

    await vm.qmp('set_link', { name: 'bond-a', up: true });
    await until(`active slave ${a} again`, 60_000, async () => ((await active()) === a ? true : undefined), 2000);
  });
});
