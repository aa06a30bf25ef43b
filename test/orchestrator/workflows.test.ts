// The orchestrator's playbooks, run for real with ansible-playbook inside a fresh lab: failures that
// must end fast with a clear message and leave the BMC as it was, an inspection over virtual CD with
// TLS and an impostor on the network, and a provisioning by UEFI HTTP Boot onto the disk with the
// requested serial. Both servers have BMC quirk profiles on. Each workflow's wall time is reported
// split into phases (test-results/orchestrator/phases.json).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { setLink } from '../../lab/links.js';
import { ip } from '../../lab/netns.js';
import { nsFetch } from '../../lab/ns-http.js';
import { failures, phases, runPlaybook, type PlaybookRun } from '../support/ansible.js';
import { Bmc, jsonLines, LabService, startLab, until, type TestLab } from '../support/lab.js';
import { REPO } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-amd64.img', 'target-debian12-amd64.qcow2');
const LOGS = path.join(REPO, 'test-results/orchestrator');
const IMPOSTOR = '192.0.2.250';
const VLAN = 100;
const timings: Record<string, Record<string, number>> = {};

describe('orchestrator workflows in the lab', { timeout: 1_200_000 }, () => {
  let lab: TestLab;
  let bmc1: Bmc;
  let bmc2: Bmc;
  let svc: LabService;
  const play = (playbook: string, args: string[], name: string, timeoutMs = 1_100_000) =>
    runPlaybook(lab.ns, lab.d.inventory, playbook, args, { timeoutMs, log: path.join(LOGS, `${name}.log`) });

  beforeAll(async () => {
    lab = await startLab({
      servers: 2,
      quirks: { server1: ['eject-lag', 'post-lock', 'iso-only', 'manager-media-only'], server2: ['no-power-cycle', 'post-lock'] },
      // Both NICs of each server on the provisioning bridge, and a tagged VLAN on it: the lab's
      // inventory provisions onto VLAN 100 over an active-backup bond of the two.
      secondNic: 'provisioning',
      vlan: VLAN,
    });
    bmc1 = new Bmc(lab.ns, lab.d.servers[0]!);
    bmc2 = new Bmc(lab.ns, lab.d.servers[1]!);
    svc = new LabService(lab.ns, lab.d);
  }, 60_000);

  afterAll(async () => {
    fs.mkdirSync(LOGS, { recursive: true });
    fs.writeFileSync(path.join(LOGS, 'phases.json'), JSON.stringify(timings, null, 2) + '\n');
    console.log(`workflow phases (s): ${JSON.stringify(timings)}`);
    await lab?.down();
  }, 60_000);

  const MEDIA1 = '/redfish/v1/Managers/BMC/VirtualMedia';
  const untouched = async (bmc: Bmc, media: string) => {
    const sys = await bmc.get(bmc.system);
    expect(sys.PowerState).toBe('Off');
    expect(sys.Boot).toMatchObject({ BootSourceOverrideEnabled: 'Disabled' });
    expect(await bmc.get(`${media}/Cd`)).toMatchObject({ Inserted: false, Image: null });
  };

  test('a wrong BMC password fails at once, naming the server, the step and the HTTP status', async () => {
    const run = await play('inspect.yml', ['--limit', 'server1', '-e', 'bmc_password=wrong'], 'wrong-password', 180_000);
    expect(run.code).not.toBe(0);
    const msg = failures(run).at(-1)!;
    expect(msg).toMatch(/^server1: .*(Systems|system).*HTTP status: 401/);
    expect(run.output).not.toContain('Traceback');
    expect(run.seconds).toBeLessThan(120);
    await untouched(bmc1, MEDIA1);
  });

  test('an address two servers would share stops the run before any BMC is touched', async () => {
    const before = [bmc1, bmc2].map((b) => b.logEvents('incoming request').length);
    const run = await play('provision.yml', ['-e', 'server_host=198.51.100.150'], 'ipam-collision', 180_000);
    expect(run.code).not.toBe(0);
    const msgs = failures(run).join('\n');
    expect(msgs).toMatch(/server1 and server2 would both get 198\.51\.100\.150/);
    expect(msgs).toMatch(/server2 and server1 would both get 198\.51\.100\.150/);
    expect(run.output).not.toMatch(/TASK \[redfish/);
    // Not one request reached a BMC.
    expect([bmc1, bmc2].map((b) => b.logEvents('incoming request').length)).toEqual(before);
    const gateway = await play('provision.yml', ['--limit', 'server1', '-e', 'server_host=198.51.100.129'], 'ipam-gateway', 180_000);
    expect(failures(gateway).join('\n')).toMatch(/server1: address 198\.51\.100\.129 cannot be used in 198\.51\.100\.128\/25/);
  });

  test('a checkin that never comes fails after the timeout and gives the BMC back', async () => {
    const run = await play('inspect.yml', ['--limit', 'server1', '-e', 'checkin_timeout=10', '-e', 'redfish_graceful_timeout=10'], 'checkin-timeout', 400_000);
    expect(run.code).not.toBe(0);
    expect(failures(run).at(-1)).toMatch(/^server1: .*no checkin within 10 s .*BMC power state: Off/);
    await untouched(bmc1, MEDIA1);
  });

  test('inspection over virtual CD with TLS finds the real server past an impostor and lists exactly its hardware', async () => {
    // Stale media from an earlier run, on a BMC that keeps reporting it for a while after the eject.
    const stale = await svc.buildTiny('stale-media');
    await until('stale media inserted', 60_000, async () => ((await bmc1.insert(stale.isoUrl, MEDIA1)).status === 204 ? true : undefined), 2_000);

    // The impostor: an sshd of its own on the provisioning network that learns the checkin id.
    await ip('-n', lab.ns, 'addr', 'add', `${IMPOSTOR}/32`, 'dev', lab.d.network.bridge);
    const idFile = path.join(lab.d.stateDir, 'impostor-id');
    const impostorLog = path.join(LOGS, 'impostor.log');
    fs.mkdirSync(LOGS, { recursive: true });
    const impostor: ChildProcess = spawn('ip', ['netns', 'exec', lab.ns, process.execPath, path.join(REPO, 'test/support/impostor-sshd.mjs'), IMPOSTOR, idFile], {
      stdio: ['ignore', fs.openSync(impostorLog, 'w'), 'inherit'],
    });
    // Only registrations of this run count (earlier tests registered ids too).
    const logged = jsonLines(lab.d.serviceLog).length;
    let stopImpostor = false;
    let seenBoth = false;
    const impostorLoop = (async () => {
      // It reads the checkin id from the traffic (here: the service's log), then keeps its own address
      // first in the record, also after the real server's PUT.
      const id = await until('checkin registration', 600_000, async () => {
        const reg = jsonLines(lab.d.serviceLog).slice(logged).find((l) => l.method === 'POST' && /^\/api\/v1\/checkins\/[0-9a-f-]{36}$/.test(String(l.url)) && l.status === 204 && !String(l.url).includes('stale'));
        return reg ? String(reg.url).split('/').pop() : undefined;
      }, 200);
      fs.writeFileSync(idFile, `${id}\n`);
      while (!stopImpostor) {
        const r = await svc.call<{ addresses: string[] }>('GET', `/api/v1/checkins/${id}`);
        const addresses = r.status === 200 ? r.body.addresses : [];
        if (r.status === 200 && addresses[0] !== IMPOSTOR) {
          await nsFetch(lab.ns, `${lab.d.serviceUrl}/api/v1/checkins/${id}`, { method: 'PUT', body: { addresses: [IMPOSTOR, ...addresses.filter((a) => a !== IMPOSTOR)] } });
        }
        if (addresses.length > 1) seenBoth = true;
        await new Promise((r2) => setTimeout(r2, 20));
      }
    })();

    let run: PlaybookRun;
    try {
      run = await play('inspect.yml', ['--limit', 'server1', '-e', 'tls=true', '-v'], 'inspect');
    } finally {
      stopImpostor = true;
      await impostorLoop.catch(() => {});
      impostor.kill();
    }
    expect(run.code, failures(run).join('\n')).toBe(0);
    expect(seenBoth).toBe(true);
    // The impostor was tried and refused on its host key, before any command ran on it.
    expect(run.output).toContain(IMPOSTOR);
    expect(run.output).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(fs.readFileSync(impostorLog, 'utf8')).not.toContain('exec:');
    // The BMC password never reaches the output, not even with -v.
    expect(run.output).not.toContain(lab.d.servers[0]!.bmc.password);

    const server = lab.d.servers[0]!;
    const dir = path.join(lab.d.stateDir, 'inspections');
    const byHost = JSON.parse(fs.readFileSync(path.join(dir, 'server1.json'), 'utf8'));
    const byUuid = fs.readdirSync(dir).filter((f) => /^inspection-[0-9a-f-]{36}\.json$/.test(f));
    expect(byUuid).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(dir, byUuid[0]!), 'utf8'))).toEqual(byHost);
    expect(byHost.nics.map((n: { mac: string }) => n.mac).sort()).toEqual([...server.macs].sort());
    const disks = byHost.disks.filter((d: { type: string }) => d.type === 'disk');
    expect(disks.map((d: { serial: string }) => d.serial).sort()).toEqual(server.disks.map((d) => d.serial).sort());
    expect(disks.find((d: { serial: string }) => d.serial === server.disks[0]!.serial).wwn).toBe(server.disks[0]!.wwn);
    // TLS: the BMC was given the https ISO.
    expect(bmc1.logEvents('media inserted').some((e) => String(e.image).startsWith('https://'))).toBe(true);
    // The BMC is back as found: off, no media, no override.
    await untouched(bmc1, MEDIA1);
    timings.inspection = phases(run, [
      ['build', 'Submit the build'],
      ['power and media', 'Find the system, its reset types'],
      ['boot to checkin', 'Wait for the server to check in'],
      ['find server over SSH', 'Find the server among'],
      ['inventory', 'Collect the hardware inventory'],
      ['release BMC', 'Give the BMC back'],
    ]);
  });

  test('provisioning by UEFI HTTP Boot onto VLAN 100 over an active-backup bond: both OSes on the IPAM address, the installed one from the requested disk and on through a pulled cable', async () => {
    const server = lab.d.servers[1]!;
    // The address, computed here independently of Ansible (the design's IPAM) in the VLAN's 198.51.100.128/25.
    expect(lab.d.network.vlan).toMatchObject({ id: VLAN, cidr: '198.51.100.128/25' });
    const digest = createHash('sha256').update(`${server.bmc.host}/${server.bmc.systemId}`).digest('hex');
    const offset = (parseInt(digest.slice(0, 8), 16) % (128 - 3)) + 2;
    const address = `198.51.100.${128 + offset}`;
    const sshArgs = ['ssh', '-i', lab.d.sshKey, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];
    // Which OS answers (only the ephemeral OS has hw-inventory), then its links, bond and addresses.
    const NETWORK_STATE = 'if [ -x /usr/local/bin/hw-inventory ]; then echo ephemeral; else echo installed; fi; ip -d -o link show; echo ---; cat /proc/net/bonding/bond0; echo ---; ip -o -4 addr show';
    // While the playbook runs, look at the ephemeral OS ourselves.
    let ephemeral: string | undefined;
    let playbookDone = false;
    const watcher = (async () => {
      while (!playbookDone && ephemeral === undefined) {
        const out = await nsRun(lab.ns, [...sshArgs, `root@${address}`, NETWORK_STATE]);
        if (out?.startsWith('ephemeral\n')) ephemeral = out;
        else await new Promise((r) => setTimeout(r, 3_000));
      }
    })();
    // In the same run server1's BMC refuses the password: server1 fails alone, server2 goes on.
    const inventory = path.join(lab.d.stateDir, 'inventory-bad-server1.yml');
    fs.writeFileSync(inventory, fs.readFileSync(lab.d.inventory, 'utf8').replace(`bmc_password: "${lab.d.servers[0]!.bmc.password}"`, 'bmc_password: "wrong"'));
    const run = await runPlaybook(lab.ns, inventory, 'provision.yml', ['-e', 'boot_method=uefi-http', '-v'], { timeoutMs: 1_100_000, log: path.join(LOGS, 'provision.log') });
    playbookDone = true;
    await watcher;
    expect(run.recap.server2, failures(run).join('\n')).toMatchObject({ failed: 0, unreachable: 0 });
    expect(run.recap.server1).toMatchObject({ failed: 1 });
    expect(failures(run).at(-1)).toMatch(/^server1: .*HTTP status: 401/);
    expect(run.output).not.toContain(server.bmc.password);
    expect(run.output).toContain(`root@${address}`);
    // Our own look at the installed OS: instance-id and hostname from the seed, root on the NVMe disk.
    const ssh = await nsExec(lab.ns, [...sshArgs, `root@${address}`, 'hostname; cat /var/lib/cloud/data/instance-id; lsblk -dno SERIAL /dev/$(lsblk -no PKNAME $(findmnt -no SOURCE /)); cat /etc/os-release | grep ^ID=']);
    const [hostname, instanceId, serial, os] = ssh.trim().split('\n');
    expect(hostname).toBe('server2');
    expect(instanceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(serial?.trim()).toBe(server.disks[1]!.serial);
    expect(os).toBe('ID=debian');

    // The same network in both OSes: bond0 (active-backup, both NICs, the first one active) and
    // VLAN 100 on it carrying the address.
    expect(ephemeral, 'the ephemeral OS was never seen on the address').toBeDefined();
    const installed = await nsExec(lab.ns, [...sshArgs, `root@${address}`, NETWORK_STATE]);
    for (const [os, state] of [['ephemeral', ephemeral!], ['installed', installed]] as const) {
      const [links, bonding, addrs] = state.split('---\n') as [string, string, string];
      // Both ports carry the bond's MAC, the first port's own (set by the network-config).
      expect(links, os).toMatch(/^\d+: bond0s0: .*master bond0 .*link\/ether 52:54:00:1a:02:01 .*bond_slave state ACTIVE .*perm_hwaddr 52:54:00:1a:02:01 /m);
      expect(links, os).toMatch(/^\d+: bond0s1: .*master bond0 .*link\/ether 52:54:00:1a:02:01 .*bond_slave state BACKUP .*perm_hwaddr 52:54:00:1a:02:02 /m);
      expect(links, os).toMatch(/^\d+: bond0: .*link\/ether 52:54:00:1a:02:01 .*bond mode active-backup active_slave bond0s0 miimon 100 /m);
      expect(links, os).toMatch(new RegExp(`^\\d+: bond0\\.${VLAN}@bond0: .*vlan protocol 802\\.1Q id ${VLAN} `, 'm'));
      expect(bonding, os).toMatch(/Bonding Mode: fault-tolerance \(active-backup\)/);
      expect(bonding, os).toMatch(/Currently Active Slave: bond0s0/);
      // (the kernel lists the ports in the order they were enslaved, which is not fixed)
      expect(bonding.match(/^Slave Interface: (\S+)/gm)?.sort(), os).toEqual(['Slave Interface: bond0s0', 'Slave Interface: bond0s1']);
      expect(addrs, os).toMatch(new RegExp(`bond0\\.${VLAN} +inet ${address.replace(/\./g, '\\.')}/25 `));
    }
    expect(installed.split('\n')[0]).toBe('installed');

    // Pull the active NIC's cable (QMP set_link from the host side): the bond fails over, SSH goes on.
    await setLink(server, 0, false);
    const failedOver = await until('SSH through the second NIC', 60_000, async () => {
      const out = await nsRun(lab.ns, [...sshArgs, `root@${address}`, 'cat /proc/net/bonding/bond0']);
      return out !== undefined && /Currently Active Slave: bond0s1/.test(out) ? out : undefined;
    }, 2_000);
    expect(failedOver).toMatch(/Slave Interface: bond0s0\nMII Status: down/);
    await setLink(server, 0, true);
    const sys = await bmc2.get(bmc2.system);
    expect(sys.PowerState).toBe('On');
    expect(sys.Boot).toMatchObject({ BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Continuous' });
    expect(await bmc2.get(`${bmc2.system}/VirtualMedia/Cd`)).toMatchObject({ Inserted: false });
    // No PowerCycle on this BMC: the playbook fell back to ForceOff + On.
    expect(run.output).toMatch(/TASK \[redfish : Power cycle \(the BMC offers PowerCycle\)\][^\n]*\nskipping/);
    expect(run.output).toMatch(/TASK \[redfish : Cut the power \(ForceOff\)\][^\n]*\nchanged/);
    timings.provisioning = phases(run, [
      ['address checks', 'Derive the address'],
      ['build', 'Submit the build'],
      ['power and media', 'Find the system, its reset types'],
      ['boot to SSH', 'Wait for SSH on'],
      ['image write', 'Find the disk'],
      ['reboot to installed OS', 'Eject, boot from the disk'],
      ['installed OS check', 'Wait until it answers with the pinned host key'],
    ]);
    await bmc2.reset('ForceOff');
  });
});

/** The command's output, or undefined when it fails (a server not answering yet). */
async function nsRun(ns: string, argv: string[]): Promise<string | undefined> {
  const { execInNamespace } = await import('../../lab/netns.js');
  const r = await execInNamespace(ns, argv[0]!, argv.slice(1), 30_000);
  return r.code === 0 ? r.stdout : undefined;
}

async function nsExec(ns: string, argv: string[]): Promise<string> {
  const { execInNamespace } = await import('../../lab/netns.js');
  const r = await execInNamespace(ns, argv[0]!, argv.slice(1), 60_000);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}
