// Static checks of the orchestrator collection: both workflows pass ansible-playbook --syntax-check and
// ansible-lint (Debian's, production profile) with nothing to report; the collection builds and
// installs offline, and the installed copy runs by its collection name; the server role gives the
// design's addresses through Ansible, checked against an independent computation for several subnets,
// and refuses unusable or shared addresses before anything else runs. (The rules themselves have their
// pytest units in orchestrator/tests/unit, run by make test.)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { ORCHESTRATOR, requireAnsible } from '../support/ansible.js';
import { tempDir } from '../support/service.js';

requireAnsible();
const run = promisify(execFile);

async function sh(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd: ORCHESTRATOR, env: { ...process.env, ANSIBLE_NOCOLOR: '1', UOD_EVENTS_FILE: '/dev/null', ...env }, maxBuffer: 16 << 20, timeout: 300_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: (e.stdout ?? '') + (e.stderr ?? '') };
  }
}

/** The design's IPAM, computed without Ansible: sha256("bmc_host/bmc_resource_id")[:8] % (size - 3) + 2. */
function ipam(bmcHost: string, resourceId: string, cidr: string): string {
  const [net, bits] = cidr.split('/') as [string, string];
  const size = 2 ** (32 - Number(bits));
  const offset = (parseInt(createHash('sha256').update(`${bmcHost}/${resourceId}`).digest('hex').slice(0, 8), 16) % (size - 3)) + 2;
  const base = net.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const n = base + offset;
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

describe('orchestrator: static checks', { timeout: 300_000 }, () => {
  test('ansible-playbook --syntax-check passes for both playbooks', async () => {
    for (const playbook of ['inspect.yml', 'provision.yml']) {
      const r = await sh('ansible-playbook', ['--syntax-check', '-i', 'inventory/example', playbook]);
      expect(r.code, r.out).toBe(0);
    }
  });

  test('ansible-lint reports nothing (production profile)', async () => {
    // --offline: the linter must not try Galaxy for the collection's dependencies (Debian bundles them).
    const r = await sh('ansible-lint', ['--offline', '--nocolor', '--profile', 'production', 'inspect.yml', 'provision.yml', 'playbooks', 'roles']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/Passed with production profile: 0 failure\(s\), 0 warning\(s\)/);
  });

  test('the collection builds and installs offline, and the installed copy runs by its name', async () => {
    const dir = tempDir('collection');
    const build = await sh('ansible-galaxy', ['collection', 'build', '--output-path', dir, '.']);
    expect(build.code, build.out).toBe(0);
    const tarball = fs.readdirSync(dir).find((f) => /^uki_on_demand-baremetal-[\d.]+\.tar\.gz$/.test(f));
    expect(tarball, build.out).toBeDefined();
    const install = await sh('ansible-galaxy', ['collection', 'install', '--offline', '-p', path.join(dir, 'collections'), path.join(dir, tarball!)]);
    expect(install.code, install.out).toBe(0);
    const installed = path.join(dir, 'collections/ansible_collections/uki_on_demand/baremetal');
    for (const f of ['playbooks/inspect.yml', 'playbooks/provision.yml', 'plugins/modules/redfish_power.py', 'plugins/callback/events.py', 'roles/bmc/tasks/boot.yml']) {
      expect(fs.existsSync(path.join(installed, f)), f).toBe(true);
    }
    expect(fs.existsSync(path.join(installed, '.collections'))).toBe(false);
    // From another directory, with only the installed copy on the collections path: provisioning two
    // servers that would share an address stops at the address check, through the installed roles,
    // filters and callback (its event file says so).
    const inv = inventory([{ ...hosts[0]!, server_host: '192.0.2.77' }, { ...hosts[0]!, name: 'z', bmc_host: '10.9.9.9', server_host: '192.0.2.77' }]);
    const events = path.join(dir, 'events.jsonl');
    const env = { ...process.env, ANSIBLE_CONFIG: '', ANSIBLE_COLLECTIONS_PATH: path.join(dir, 'collections'), ANSIBLE_CALLBACKS_ENABLED: 'uki_on_demand.baremetal.events', UOD_EVENTS_FILE: events, ANSIBLE_NOCOLOR: '1' };
    const r = await run('ansible-playbook', ['-i', path.join(inv, 'hosts.yml'), 'uki_on_demand.baremetal.provision'], { cwd: dir, env }).then(
      (o) => ({ code: 0, out: o.stdout + o.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') }),
    );
    expect(r.code, r.out).toBe(2);
    const lines = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ event: 'run', playbook: path.join(installed, 'playbooks/provision.yml') });
    expect(lines.filter((l) => l.event === 'server').map((l) => [l.server, l.result, l.message.replace(/\s+/g, ' ')])).toEqual([
      ['a', 'failed', 'a: Check that no other server of this run gets the same address: a and z would both get 192.0.2.77: set server_host for one of them (BMC power state: not read, last HTTP status: none)'],
      ['z', 'failed', 'z: Check that no other server of this run gets the same address: z and a would both get 192.0.2.77: set server_host for one of them (BMC power state: not read, last HTTP status: none)'],
    ]);
  });

  test('--check is refused at once, before anything runs', async () => {
    for (const playbook of ['inspect.yml', 'provision.yml']) {
      const r = await sh('ansible-playbook', ['--check', '-i', 'inventory/example', playbook]);
      expect(r.code, r.out).toBe(2);
      expect(r.out).toMatch(/--check is not supported/);
      expect(r.out).not.toMatch(/TASK \[.*(Give this run|Give the server its address)/);
    }
  });

  const hosts = [
    { name: 'a', bmc_host: '10.1.2.3', bmc_resource_id: 'System.Embedded.1', server_subnet: '192.0.2.0/24', server_gateway: '192.0.2.1' },
    { name: 'b', bmc_host: 'bmc-b.example.net', bmc_resource_id: '1', server_subnet: '10.20.0.0/16', server_gateway: '10.20.0.1' },
    { name: 'c', bmc_host: '198.51.100.12:8443', bmc_resource_id: 'Self', server_subnet: '198.51.100.16/28', server_gateway: '198.51.100.17' },
    { name: 'd', bmc_host: '172.16.9.9', bmc_resource_id: 'System.Embedded.1', server_subnet: '172.16.32.0/20', server_gateway: '172.16.32.1' },
  ];

  function inventory(entries: Record<string, unknown>[]): string {
    const dir = tempDir('ipam');
    const lines = ['servers:', '  hosts:'];
    for (const h of entries) {
      lines.push(`    ${h.name}:`);
      for (const [k, v] of Object.entries(h)) if (k !== 'name') lines.push(`      ${k}: ${JSON.stringify(v)}`);
      lines.push('      server_mac: "52:54:00:00:00:01"');
    }
    fs.writeFileSync(path.join(dir, 'hosts.yml'), lines.join('\n') + '\n');
    return dir;
  }

  const ipamPlay = (dir: string) => sh('ansible-playbook', ['-i', path.join(dir, 'hosts.yml'), path.resolve(import.meta.dirname, 'fixtures/ipam.yml'), '-e', `ipam_out=${dir}`]);

  test('IPAM gives the addresses of an independent computation, for several subnets', async () => {
    expect(ipam('10.1.2.3', 'System.Embedded.1', '192.0.2.0/24')).toBe('192.0.2.46'); // the value checked by hand in LAB.md
    const dir = inventory(hosts);
    const r = await ipamPlay(dir);
    expect(r.code, r.out).toBe(0);
    for (const h of hosts) {
      expect(fs.readFileSync(path.join(dir, h.name), 'utf8'), h.name).toBe(ipam(h.bmc_host, h.bmc_resource_id, h.server_subnet));
    }
  });

  test('IPAM refuses network, broadcast, gateway and foreign addresses, and one address for two servers', async () => {
    const base = hosts[0]!;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ server_host: '192.0.2.0' }, /\[a( -> localhost)?\]: FAILED! => .*address 192\.0\.2\.0 cannot be used in 192\.0\.2\.0\/24/],
      [{ server_host: '192.0.2.255' }, /\[a( -> localhost)?\]: FAILED! => .*address 192\.0\.2\.255 cannot be used/],
      [{ server_host: '192.0.2.1' }, /\[a( -> localhost)?\]: FAILED! => .*address 192\.0\.2\.1 cannot be used/],
      [{ server_host: '10.9.9.9' }, /\[a( -> localhost)?\]: FAILED! => .*address 10\.9\.9\.9 cannot be used/],
      [{ server_host: '', bmc_resource_id: '' }, /\[a( -> localhost)?\]: FAILED! => .*set server_host, or bmc_resource_id/],
    ];
    for (const [override, message] of cases) {
      const r = await ipamPlay(inventory([{ ...base, ...override }]));
      expect(r.code).not.toBe(0);
      expect(r.out).toMatch(message);
    }
    const twins = await ipamPlay(inventory([{ ...base, server_host: '192.0.2.77' }, { ...base, name: 'z', bmc_host: '10.9.9.9', server_host: '192.0.2.77' }]));
    expect(twins.code).not.toBe(0);
    expect(twins.out).toMatch(/a and z would both get 192\.0\.2\.77/);
    expect(twins.out).toMatch(/z and a would both get 192\.0\.2\.77/);
  });

  test('the network-config puts the address on the NIC, the bond, or the VLAN on either, all matched by MAC', async () => {
    const base = { ...hosts[0]!, server_host: '192.0.2.77', server_dns: ['192.0.2.53'] };
    const macs = ['52:54:00:AA:00:01', '52:54:00:aa:00:02'];
    const l3 = { addresses: ['192.0.2.77/24'], routes: [{ to: 'default', via: '192.0.2.1' }], nameservers: { addresses: ['192.0.2.53'] } };
    const slaves = {
      bond0s0: { match: { macaddress: '52:54:00:aa:00:01' }, 'set-name': 'bond0s0' },
      bond0s1: { match: { macaddress: '52:54:00:aa:00:02' }, 'set-name': 'bond0s1' },
    };
    const activeBackup = { macaddress: '52:54:00:aa:00:01', interfaces: ['bond0s0', 'bond0s1'], parameters: { mode: 'active-backup', 'mii-monitor-interval': 100, primary: 'bond0s0' } };
    const cases: [string, Record<string, unknown>, unknown][] = [
      ['plain', {}, { version: 2, ethernets: { eth0: { match: { macaddress: '52:54:00:00:00:01' }, ...l3 } } }],
      ['vlan', { server_vlan: 7 }, {
        version: 2, ethernets: { eth0: { match: { macaddress: '52:54:00:00:00:01' } } },
        vlans: { 'eth0.7': { id: 7, link: 'eth0', ...l3 } },
      }],
      ['bond', { server_bond_macs: macs }, { version: 2, ethernets: slaves, bonds: { bond0: { ...activeBackup, ...l3 } } }],
      ['bondvlan', { server_bond_macs: macs, server_vlan: 100 }, {
        version: 2, ethernets: slaves, bonds: { bond0: activeBackup }, vlans: { 'bond0.100': { id: 100, link: 'bond0', ...l3 } },
      }],
      ['lacp', { server_bond_macs: macs, server_bond_mode: '802.3ad' }, {
        version: 2, ethernets: slaves,
        bonds: { bond0: { macaddress: '52:54:00:aa:00:01', interfaces: ['bond0s0', 'bond0s1'], parameters: { mode: '802.3ad', 'mii-monitor-interval': 100, 'lacp-rate': 'fast', 'transmit-hash-policy': 'layer3+4' }, ...l3 } },
      }],
    ];
    // One host per case, each with its own address (two hosts of one run may not share one).
    const dir = inventory(cases.map(([name, override], i) => ({ ...base, name, server_host: `192.0.2.${77 + i}`, ...override })));
    const r = await ipamPlay(dir);
    expect(r.code, r.out).toBe(0);
    for (const [i, [name, , expected]] of cases.entries()) {
      const want = JSON.parse(JSON.stringify(expected).replace('192.0.2.77/24', `192.0.2.${77 + i}/24`));
      expect(JSON.parse(fs.readFileSync(path.join(dir, `${name}.network-config.json`), 'utf8')), name).toEqual(want);
    }

    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ server_bond_macs: ['52:54:00:aa:00:01'] }, /server_bond_macs must list two or more distinct MAC addresses \(or none\)/],
      [{ server_bond_macs: ['52:54:00:aa:00:01', 'not-a-mac'] }, /server_bond_macs must list two or more distinct MAC addresses/],
      [{ server_bond_macs: ['52:54:00:aa:00:01', '52:54:00:AA:00:01'] }, /server_bond_macs must list two or more distinct MAC addresses/],
      [{ server_vlan: 4095 }, /server_vlan must be a VLAN id from 1 to 4094 \(0: untagged\); got 4095/],
    ];
    for (const [override, message] of refusals) {
      const bad = await ipamPlay(inventory([{ ...base, ...override }]));
      expect(bad.code, JSON.stringify(override)).not.toBe(0);
      expect(bad.out).toMatch(message);
    }
    const mode = await ipamPlay(inventory([{ ...base, server_bond_macs: macs, server_bond_mode: 'round-robin' }]));
    expect(mode.code).not.toBe(0);
    expect(mode.out).toMatch(/server_bond_mode/);
  });
});
