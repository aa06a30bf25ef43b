// The orchestrator's collection, run for real with ansible-playbook inside a fresh lab whose BMCs
// are profiles of real ones (server1 Dell iDRAC9, server2 Lenovo XCC, server3 HPE iLO 5, served from
// their recordings): failures that must end at once with a clear message and leave the BMC as it was
// (observed in the BMC's own request log), an inspection of the HPE server over virtual CD in its
// Manager's slot 2 with TLS and an impostor on the network, and a provisioning of the Dell server (UEFI
// HTTP boot through its BIOS settings, on a static address without DHCP for its OSes, PowerCycle) and
// the Lenovo one (virtual CD by PATCH, Once-only overrides, ForceOff and On, a bond and VLAN 100) in
// one run, past an impostor on the address; the Dell one with secure_boot enforce (the service's
// certificate enrolled in db through Redfish, the ephemeral OS booted with Secure Boot on, and the
// installed OS, signed at image build, booted with it still on). The Dell and HPE servers have TPMs:
// PCR 11 of each one's ephemeral OS (two builds) equals the service's prediction. Results come from
// each run's event file; each workflow's phases (wall, waiting, the orchestrator's own time) go to
// test-results/orchestrator/phases.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import YAML from 'yaml';
import { setLink } from '../../lab/links.js';
import { ip } from '../../lab/netns.js';
import { nsFetch } from '../../lab/ns-http.js';
import { failures, phasesOf, requireAnsible, runPlaybook, serverResult, timings, type PlaybookRun } from '../support/ansible.js';
import { Bmc, jsonLines, LabService, startLab, until, type TestLab } from '../support/lab.js';
import { REPO } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-amd64.img', 'target-debian12-amd64.qcow2');
requireAnsible();
const LOGS = path.join(REPO, 'test-results/orchestrator');
const IMPOSTOR = '192.0.2.250';
const VLAN = 100;
const phaseTimes: Record<string, unknown> = {};

/** What the BMC answered to each request from its log line `from` on (Fastify's request log). */
function bmcRequests(bmc: Bmc, from: number): { method: string; url: string; status: number }[] {
  const lines = jsonLines(bmc.server.bmcLog).slice(from);
  const incoming = new Map(lines.filter((l) => l.msg === 'incoming request').map((l) => [l.reqId, l.req]));
  return lines
    .filter((l) => l.msg === 'request completed' && incoming.has(l.reqId))
    .map((l) => ({ method: incoming.get(l.reqId).method, url: incoming.get(l.reqId).url, status: l.res.statusCode }));
}
const logLength = (bmc: Bmc) => jsonLines(bmc.server.bmcLog).length;
const eventsSince = (bmc: Bmc, from: number, msg: string) => jsonLines(bmc.server.bmcLog).slice(from).filter((l) => l.msg === msg);

// Each profile's CD slot, as its recording places it.
const SLOT1 = '/redfish/v1/Systems/System.Embedded.1/VirtualMedia/1';
const SLOT2 = '/redfish/v1/Systems/1/VirtualMedia/EXT1';
const SLOT3 = '/redfish/v1/Managers/1/VirtualMedia/2';

describe('orchestrator workflows in the lab', { timeout: 1_800_000 }, () => {
  let lab: TestLab;
  let bmc1: Bmc;
  let bmc2: Bmc;
  let bmc3: Bmc;
  let svc: LabService;
  const play = (playbook: string, args: string[], name: string, timeoutMs = 1_100_000) =>
    runPlaybook(lab.ns, lab.d.inventory, playbook, args, { timeoutMs, log: path.join(LOGS, `${name}.log`) });

  beforeAll(async () => {
    lab = await startLab({
      servers: 3,
      profiles: { server1: 'dell', server2: 'lenovo', server3: 'hpe' },
      // server1 runs on a static address: DHCP answers its firmware's HTTP boot only; its firmware has
      // Secure Boot (PK of the lab, db without the service's key), which the provisioning enforces.
      staticServers: ['server1'],
      secureBootServers: ['server1'],
      tpmServers: ['server1', 'server3'],
      // Both NICs of each server on the provisioning bridge, and a tagged VLAN on it: the lab's
      // inventory provisions the others onto VLAN 100 over an active-backup bond of the two.
      secondNic: 'provisioning',
      vlan: VLAN,
    });
    [bmc1, bmc2, bmc3] = lab.d.servers.map((s) => new Bmc(lab.ns, s)) as [Bmc, Bmc, Bmc];
    svc = new LabService(lab.ns, lab.d);
  }, 60_000);

  afterAll(async () => {
    fs.mkdirSync(LOGS, { recursive: true });
    fs.writeFileSync(path.join(LOGS, 'phases.json'), JSON.stringify(phaseTimes, null, 2) + '\n');
    console.log(`workflow phases (s): ${JSON.stringify(phaseTimes)}`);
    await lab?.down();
  }, 60_000);

  let inspectedBuild: string | undefined;
  /** The report's PCR 11 (read in the ephemeral OS) against the build status the service gives for its build. */
  const expectPredictedPcr11 = async (report: { tpm: { pcr11_sha256: string }; measured_boot: { build_id: string; read: string; expected: string; matched: boolean } }) => {
    const status = await svc.call<{ measurements: { pcr11: { phase: string; sha256: string }[] } }>('GET', `/api/v1/builds/${report.measured_boot.build_id}`);
    expect(status.status).toBe(200);
    const predicted = status.body.measurements.pcr11.find((p) => p.phase === 'sysinit:ready')!.sha256;
    expect(report.tpm.pcr11_sha256).toBe(predicted);
    expect(report.measured_boot).toMatchObject({ phase: 'sysinit:ready', expected: predicted, read: predicted, matched: true });
    inspectedBuild ??= report.measured_boot.build_id;
  };

  const untouched = async (bmc: Bmc, slot: string) => {
    const sys = await bmc.get(bmc.system);
    expect(sys.PowerState).toBe('Off');
    expect(sys.Boot).toMatchObject({ BootSourceOverrideEnabled: 'Disabled' });
    expect(await bmc.get(slot)).toMatchObject({ Inserted: false, Image: null });
  };

  test('a wrong BMC password (HPE) fails at once, naming the server, the step and the HTTP status; the BMC answered 401 to everything but its public root (the session login too)', async () => {
    const from = logLength(bmc3);
    const run = await play('inspect.yml', ['--limit', 'server3', '-e', 'bmc_password=wrong'], 'wrong-password', 180_000);
    expect(run.code).toBe(2);
    expect(failures(run).server3).toMatch(/^server3: Read what the BMC offers: .*HTTP 401.*\(BMC power state: not read,\s+last HTTP status: 401\)$/s);
    expect(run.output).not.toContain('Traceback');
    const requests = bmcRequests(bmc3, from);
    const authenticated = requests.filter((r) => !(r.method === 'GET' && /^\/redfish(\/v1)?\/?$/.test(r.url)));
    expect(authenticated.length).toBeGreaterThan(0);
    expect(authenticated.filter((r) => r.status !== 401)).toEqual([]);
    // No handler that changes state was reached.
    for (const msg of ['reset', 'media inserted', 'media ejected', 'boot override']) expect(eventsSince(bmc3, from, msg), msg).toEqual([]);
    await untouched(bmc3, SLOT3);
  });

  test('an address two servers would share stops the run before any BMC is touched', async () => {
    const before = [bmc2, bmc3].map(logLength);
    // (server2 and server3 share the VLAN's subnet; server1 is on the untagged one.)
    const run = await play('provision.yml', ['--limit', 'server2,server3', '-e', 'server_host=198.51.100.150'], 'ipam-collision', 180_000);
    expect(run.code).toBe(2);
    const msgs = failures(run);
    expect(msgs.server2).toMatch(/server2 and server3 would both get 198\.51\.100\.150/);
    expect(msgs.server3).toMatch(/server3 and server2 would both get 198\.51\.100\.150/);
    // The only phase that ran is the address check (build); not one request reached a BMC.
    expect(new Set(run.events.filter((e) => e.event === 'phase').map((e) => e.phase))).toEqual(new Set(['build']));
    expect([bmc2, bmc3].map(logLength)).toEqual(before);
    const gateway = await play('provision.yml', ['--limit', 'server2', '-e', 'server_host=198.51.100.129'], 'ipam-gateway', 180_000);
    expect(gateway.code).toBe(2);
    expect(failures(gateway).server2).toMatch(/server2: .*address 198\.51\.100\.129 cannot be used in 198\.51\.100\.128\/25/);
  });

  test('a checkin that never comes (HPE) fails after the timeout and gives the changed BMC back; TLS off needs no CA; the System Id is discovered', async () => {
    // As a newcomer's inventory: tls false (the default) and no CA file, no bmc_resource_id.
    const inventory = path.join(lab.d.stateDir, 'inventory-newcomer.yml');
    fs.writeFileSync(inventory, fs.readFileSync(lab.d.inventory, 'utf8').split('\n').filter((l) => !/^\s+(uod_ca_cert|bmc_resource_id):/.test(l)).join('\n'));
    expect(fs.readFileSync(inventory, 'utf8')).not.toMatch(/uod_ca_cert|bmc_resource_id/);
    const from = logLength(bmc3);
    const run = await runPlaybook(lab.ns, inventory, 'inspect.yml', ['--limit', 'server3', '-e', 'checkin_timeout=5', '-e', 'redfish_graceful_timeout=10'], { timeoutMs: 400_000, log: path.join(LOGS, 'checkin-timeout.log') });
    expect(run.code).toBe(2);
    expect(failures(run).server3).toMatch(/^server3: .*no checkin within 5 s.*BMC power state: Off/s);
    expect(phasesOf(run, 'server3').map((p) => [p.phase, p.result])).toEqual([['build', 'ok'], ['boot', 'ok'], ['find', 'failed'], ['release', 'ok']]);
    // The BMC was changed (media in, powered on from it), then given back.
    expect(eventsSince(bmc3, from, 'media inserted')).toHaveLength(1);
    expect(eventsSince(bmc3, from, 'power on')).toHaveLength(1);
    expect(eventsSince(bmc3, from, 'media ejected')).toHaveLength(1);
    expect(eventsSince(bmc3, from, 'power off').length).toBeGreaterThan(0);
    // post-lock: the eject came inside the POST window, was refused with 400 and went through on a retry.
    const ejects = bmcRequests(bmc3, from).filter((r) => r.method === 'POST' && r.url.endsWith('VirtualMedia.EjectMedia'));
    expect(ejects[0]!.status).toBe(400);
    expect(ejects.at(-1)!.status).toBe(204);
    expect(ejects.slice(0, -1).every((r) => r.status === 400)).toBe(true);
    await untouched(bmc3, SLOT3);
  });

  test('inspection of the HPE server over virtual CD in slot 2 under the Manager with TLS finds the real server past an impostor and lists exactly its hardware', async () => {
    // Stale media from an earlier run, in the CD slot under the Manager.
    const stale = await svc.buildTiny('stale-media');
    await until('stale media inserted', 60_000, async () => ((await bmc3.insert(stale.isoUrl, SLOT3)).status === 204 ? true : undefined), 2_000);

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
    const impostorPuts: number[] = [];
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
          const put = await nsFetch(lab.ns, `${lab.d.serviceUrl}/api/v1/checkins/${id}`, { method: 'PUT', body: { addresses: [IMPOSTOR, ...addresses.filter((a) => a !== IMPOSTOR)] } });
          impostorPuts.push(put.status);
        }
        if (addresses.length > 1) seenBoth = true;
        await new Promise((r2) => setTimeout(r2, 20));
      }
    })();

    let run: PlaybookRun;
    try {
      run = await play('inspect.yml', ['--limit', 'server3', '-e', 'tls=true', '-v'], 'inspect');
    } finally {
      stopImpostor = true;
      await impostorLoop.catch(() => {});
      impostor.kill();
    }
    expect(run.code, JSON.stringify(failures(run))).toBe(0);
    expect(serverResult(run, 'server3').result).toBe('ok');
    expect(seenBoth).toBe(true);
    // Anyone on the network may claim a checkin id: every one of the impostor's PUTs was taken.
    expect(impostorPuts.length).toBeGreaterThan(0);
    expect(new Set(impostorPuts)).toEqual(new Set([204]));
    // The impostor was tried and refused on its host key (find_server's result names its address),
    // and its own log shows the orchestrator's handshake and not one command.
    expect(run.output).toMatch(new RegExp(`"${IMPOSTOR.replace(/\./g, '\\.')}": "[^"]*Host key verification failed`));
    const impostorSaw = fs.readFileSync(impostorLog, 'utf8');
    expect(impostorSaw).toMatch(/^handshake from /m);
    expect(impostorSaw).not.toMatch(/^(authentication|exec)/m);
    // The BMC password never reaches the output, not even with -v.
    expect(run.output).not.toContain(lab.d.servers[2]!.bmc.password);

    const server = lab.d.servers[2]!;
    const dir = path.join(lab.d.stateDir, 'inspections');
    const byHost = JSON.parse(fs.readFileSync(path.join(dir, 'server3.json'), 'utf8'));
    const byUuid = fs.readdirSync(dir).filter((f) => /^inspection-[0-9a-f-]{36}\.json$/.test(f));
    expect(byUuid).toHaveLength(1);
    expect(JSON.parse(fs.readFileSync(path.join(dir, byUuid[0]!), 'utf8'))).toEqual(byHost);
    expect(byHost.nics.map((n: { mac: string }) => n.mac).sort()).toEqual([...server.macs].sort());
    const disks = byHost.disks.filter((d: { type: string }) => d.type === 'disk');
    expect(disks.map((d: { serial: string }) => d.serial).sort()).toEqual(server.disks.map((d) => d.serial).sort());
    expect(disks.find((d: { serial: string }) => d.serial === server.disks[0]!.serial).wwn).toBe(server.disks[0]!.wwn);
    // Measured boot: PCR 11 as the ephemeral OS read it from its TPM is what the service predicted for
    // the booted build (read here from the service), and the saved report says it matched.
    expect(byHost.tpm).toMatchObject({ present: true, version: 2, stub_measured: true });
    await expectPredictedPcr11(byHost);
    // TLS: the BMC was given the https ISO.
    expect(bmc3.logEvents('media inserted').some((e) => String(e.image).startsWith('https://'))).toBe(true);
    // The BMC is back as found: off, no media, no override.
    await untouched(bmc3, SLOT3);
    expect(phasesOf(run, 'server3').map((p) => [p.phase, p.result])).toEqual(
      [['build', 'ok'], ['boot', 'ok'], ['find', 'ok'], ['inventory', 'ok'], ['release', 'ok']]);
    phaseTimes.inspection = { total: run.seconds, phases: timings(run, 'server3') };
  });

  test('provisioning of the Dell server by UEFI HTTP boot through its BIOS on a static untagged address with Secure Boot enforced, and of the Lenovo server by virtual CD onto VLAN 100 over an active-backup bond past an impostor on the address: both OSes on the IPAM address, the installed one from the requested disk, with the run\'s identity, and on through a pulled cable', async () => {
    const server = lab.d.servers[1]!;
    // The addresses, computed here independently of Ansible (the design's IPAM): server2 in the VLAN's
    // 198.51.100.128/25, server1 in the untagged 192.0.2.0/24.
    expect(lab.d.network.vlan).toMatchObject({ id: VLAN, cidr: '198.51.100.128/25' });
    const ipamOf = (s: typeof server, base: string, first: number, size: number) => {
      const digest = createHash('sha256').update(`${s.bmc.host}/${s.bmc.systemId}`).digest('hex');
      return `${base}.${first + (parseInt(digest.slice(0, 8), 16) % (size - 3)) + 2}`;
    };
    const address = ipamOf(server, '198.51.100', 128, 128);
    const address1 = ipamOf(lab.d.servers[0]!, '192.0.2', 0, 256);
    const sshArgs = ['ssh', '-i', lab.d.sshKey, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];
    // Which OS answers (only the ephemeral OS has hw-inventory), then its links, bond and addresses.
    const NETWORK_STATE = 'if [ -x /usr/local/bin/hw-inventory ]; then echo ephemeral; else echo installed; fi; ip -d -o link show; echo ---; cat /proc/net/bonding/bond0; echo ---; ip -o -4 addr show';

    // An impostor holds server2's address before the real server is up; it goes once it has seen the
    // orchestrator's handshake.
    await ip('-n', lab.ns, 'addr', 'add', `${address}/32`, 'dev', 'lo');
    const impostorLog = path.join(LOGS, 'impostor-provision.log');
    fs.mkdirSync(LOGS, { recursive: true });
    const impostor: ChildProcess = spawn('ip', ['netns', 'exec', lab.ns, process.execPath, path.join(REPO, 'test/support/impostor-sshd.mjs'), address, '/dev/null'], {
      stdio: ['ignore', fs.openSync(impostorLog, 'w'), 'inherit'],
    });
    let playbookDone = false;
    let ephemeral: string | undefined;
    const provisionInventories = path.join(lab.d.stateDir, 'provision-inventories');
    const watcher = (async () => {
      await until('the orchestrator at the impostor', 600_000, async () => (/^handshake from /m.test(fs.readFileSync(impostorLog, 'utf8')) || playbookDone ? true : undefined), 500);
      impostor.kill();
      await ip('-n', lab.ns, 'addr', 'del', `${address}/32`, 'dev', 'lo');
      // Now the address is the real server's: look at the ephemeral OS ourselves.
      while (!playbookDone && ephemeral === undefined) {
        const out = await nsRun(lab.ns, [...sshArgs, `root@${address}`, NETWORK_STATE]);
        if (out?.startsWith('ephemeral\n')) ephemeral = out;
        else await new Promise((r) => setTimeout(r, 3_000));
      }
    })();
    const from = [bmc1, bmc2].map(logLength);
    let run: PlaybookRun;
    try {
      // boot_method auto (the lab inventory's for server1; given here for both): the BIOS HTTP boot
      // route on the Dell BMC, the virtual CD on the Lenovo one, which has no HTTP boot at all.
      // secure_boot enforce on server1 only, whose Secure Boot is off as found.
      expect((await bmc1.request('PATCH', `${bmc1.system}/SecureBoot`, { SecureBootEnable: false })).status).toBe(204);
      const inventory = YAML.parse(fs.readFileSync(lab.d.inventory, 'utf8'));
      inventory.all.children.servers.hosts.server1.secure_boot = 'enforce';
      // The target image's UKI is signed with a key in server1's db (make target-image; the lab
      // enrolls its certificate): Secure Boot stays on for the installed OS.
      inventory.all.children.servers.hosts.server1.secure_boot_installed_os_signed = true;
      const enforcing = path.join(lab.d.stateDir, 'inventory-secure-boot.yml');
      fs.writeFileSync(enforcing, YAML.stringify(inventory));
      run = await runPlaybook(lab.ns, enforcing, 'provision.yml', ['--limit', 'server1,server2', '-e', 'boot_method=auto', '-e', `hw_inventory_output_dir=${provisionInventories}`, '-v'], { timeoutMs: 1_500_000, log: path.join(LOGS, 'provision.log') });
    } finally {
      playbookDone = true;
      await watcher.catch(() => {});
      impostor.kill();
    }
    expect(run.code, JSON.stringify(failures(run))).toBe(0);
    for (const name of ['server1', 'server2']) {
      expect(serverResult(run, name).result, name).toBe('ok');
      expect(phasesOf(run, name).map((p) => p.phase), name).toEqual(['build', 'boot', 'find', 'inventory', 'write', 'reboot', 'verify']);
    }
    expect(run.output).not.toContain(server.bmc.password);
    // The impostor was met and refused on its host key: a handshake, no authentication, no command.
    const impostorSaw = fs.readFileSync(impostorLog, 'utf8');
    expect(impostorSaw).toMatch(/^handshake from /m);
    expect(impostorSaw).not.toMatch(/^(authentication|exec)/m);

    // auto: server2 boots from the virtual CD, with the reason printed.
    expect(run.output).toMatch(/has no Boot\.HttpBootUri and no BIOS HTTP boot setting: booting from the virtual CD/);

    // server1 (Dell): the URI and the static address went into the BIOS settings, committed to the next
    // reset; the power-on applied them and the firmware was given that HTTP boot device.
    const dellBoot = eventsSince(bmc1, from[0]!, 'power on')[0]!;
    expect(dellBoot).toMatchObject({ device: 'http', httpBootAddress: { address: address1, prefixLength: 24, gateway: '192.0.2.1' } });
    expect(String(dellBoot.httpBootUri)).toMatch(/^http:\/\/192\.0\.2\.1:8080\/.*\.efi$/);
    expect(eventsSince(bmc1, from[0]!, 'bios settings applied')[0]!.attributes).toEqual(expect.arrayContaining(['HttpDev1Uri', 'HttpDev1Ip', 'HttpDev1DhcpEnDis']));
    const dellRequests = bmcRequests(bmc1, from[0]!).filter((r) => r.method === 'PATCH').map((r) => `${r.url} ${r.status}`);
    expect(dellRequests).toContain('/redfish/v1/Systems/System.Embedded.1/Bios/Settings 204');
    // No DHCP for server1's OSes: the lab's DHCP server answered only its firmware (vendor class
    // HTTPClient), and both OSes hold the static address, not a lease.
    const dhcp = fs.readFileSync(lab.d.dhcpLog, 'utf8');
    const mac1 = lab.d.servers[0]!.macs;
    // (--log-dhcp lines: "... dnsmasq-dhcp[PID]: XID DHCPACK(br0) ADDRESS MAC", and per XID its vendor class)
    const xid = (line: string) => /dnsmasq-dhcp\[\d+\]: (\d+) /.exec(line)?.[1];
    const lines1 = dhcp.split('\n').filter((l) => /DHCP[A-Z]+\(/.test(l) && mac1.some((m) => l.includes(m)));
    expect(lines1.filter((l) => /DHCPACK/.test(l)).length, dhcp).toBeGreaterThan(0);
    const firmwareXids = new Set(dhcp.split('\n').filter((l) => /vendor class: HTTPClient/.test(l)).map(xid));
    for (const line of lines1) expect(firmwareXids.has(xid(line)), `not from the firmware: ${line}`).toBe(true);
    const addr1 = await nsExec(lab.ns, [...sshArgs, `root@${address1}`, 'ip -o -4 addr show scope global']);
    expect(addr1).toMatch(new RegExp(`inet ${address1.replace(/\./g, '\\.')}/24 `));
    expect(addr1).not.toMatch(/dynamic/);

    // secure_boot enforce on server1: the service's certificate was enrolled in db through Redfish (the
    // lab's key and the target image's were there), the ephemeral OS booted with Secure Boot on (the
    // playbook checked the BMC's and the OS's word), and so did the installed OS, whose UKI is signed.
    const dbCerts = await bmc1.get(`${bmc1.system}/SecureBoot/SecureBootDatabases/db/Certificates`);
    expect(dbCerts['Members@odata.count']).toBe(3);
    expect(bmcRequests(bmc1, from[0]!).filter((r) => r.method === 'POST' && r.url.endsWith('/db/Certificates')).map((r) => r.status)).toEqual([201]);
    const sbBoots = eventsSince(bmc1, from[0]!, 'power on').map((e) => (e.secureBoot as { enabled: boolean }).enabled);
    expect(sbBoots.length).toBeGreaterThanOrEqual(2); // the ephemeral OS, then the installed one
    expect(sbBoots.every((on) => on === true)).toBe(true);
    expect(run.output).toMatch(/Check that the image booted with Secure Boot on[\s\S]*?ok: \[server1/);
    expect(await bmc1.get(`${bmc1.system}/SecureBoot`)).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: 'Enabled' });
    // The installed OS's own word: its firmware's SecureBoot variable (4 attribute bytes, then 1 = on).
    expect((await nsExec(lab.ns, [...sshArgs, `root@${address1}`, 'od -An -tu1 -j4 -N1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c'])).trim()).toBe('1');
    // Measured boot on server1 too: another build, its own prediction matched.
    const inventory1 = JSON.parse(fs.readFileSync(path.join(provisionInventories, 'server1.json'), 'utf8'));
    await expectPredictedPcr11(inventory1);
    expect(inventory1.measured_boot.build_id).not.toBe(inspectedBuild);

    // server2 (Lenovo): the media went into its first usable slot by PATCH; every override was Once
    // (it allows nothing longer), set again for the disk boot.
    expect(bmcRequests(bmc2, from[1]!).filter((r) => r.method === 'PATCH' && r.url.includes('/VirtualMedia/')).map((r) => `${r.url} ${r.status}`))
      .toEqual([`${SLOT2} 204`, `${SLOT2} 204`]);
    const overrides2 = eventsSince(bmc2, from[1]!, 'boot override').map((e) => `${e.target} ${e.enabled}`);
    expect(overrides2).toEqual(expect.arrayContaining(['Cd Once', 'Hdd Once']));
    expect(overrides2.filter((o) => o.includes('Continuous'))).toEqual([]);

    // The reboot into the installed OS: PowerCycle where the BMC offers it (server1), ForceOff and On
    // where it does not (server2), as each BMC's own log shows.
    const resets = (bmc: Bmc, i: number) => eventsSince(bmc, from[i]!, 'reset').map((e) => e.type);
    expect(resets(bmc1, 0).at(-1)).toBe('PowerCycle');
    expect(resets(bmc2, 1)).not.toContain('PowerCycle');
    expect(resets(bmc2, 1).slice(-2)).toEqual(['ForceOff', 'On']);

    // The installed OS of server2: the host key that answers is the run's pinned one (the test's own
    // ssh checks it strictly), its instance-id is the run's UUID, its root on the requested disk.
    const identity = serverResult(run, 'server2');
    expect(identity.run_id).toMatch(/^[0-9a-f-]{36}$/);
    const scanned = await nsExec(lab.ns, ['ssh-keyscan', '-t', 'ed25519', address]);
    const knownHosts = path.join(lab.d.stateDir, 'known_hosts-server2');
    fs.writeFileSync(knownHosts, scanned);
    const fingerprint = (await nsExec(lab.ns, ['ssh-keygen', '-l', '-E', 'sha256', '-f', knownHosts])).split(' ')[1];
    expect(fingerprint).toBe(identity.host_key_fingerprint);
    const strict = ['ssh', '-i', lab.d.sshKey, '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];
    const ssh = await nsExec(lab.ns, [...strict, `root@${address}`, 'hostname; cat /var/lib/cloud/data/instance-id; lsblk -dno SERIAL /dev/$(lsblk -no PKNAME $(findmnt -no SOURCE /)); cat /etc/os-release | grep ^ID=']);
    const [hostname, instanceId, serial, os] = ssh.trim().split('\n');
    expect(hostname).toBe('server2');
    expect(instanceId).toBe(identity.run_id);
    expect(serial?.trim()).toBe(server.disks[1]!.serial);
    expect(os).toBe('ID=debian');
    // server1 too, at its own IPAM address, from its own disk.
    const one = await nsExec(lab.ns, [...sshArgs, `root@${address1}`, 'hostname; cat /var/lib/cloud/data/instance-id']);
    expect(one.trim().split('\n')).toEqual(['server1', serverResult(run, 'server1').run_id]);

    // The same network in both OSes: bond0 (active-backup, both NICs, the first one active) and
    // VLAN 100 on it carrying the address.
    expect(ephemeral, 'the ephemeral OS was never seen on the address').toBeDefined();
    const installed = await nsExec(lab.ns, [...strict, `root@${address}`, NETWORK_STATE]);
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
    await setLink(lab.ns, server, 0, false);
    const failedOver = await until('SSH through the second NIC', 60_000, async () => {
      const out = await nsRun(lab.ns, [...strict, `root@${address}`, 'cat /proc/net/bonding/bond0']);
      return out !== undefined && /Currently Active Slave: bond0s1/.test(out) ? out : undefined;
    }, 2_000);
    expect(failedOver).toMatch(/Slave Interface: bond0s0\nMII Status: down/);
    await setLink(lab.ns, server, 0, true);
    const sys = await bmc2.get(bmc2.system);
    expect(sys.PowerState).toBe('On');
    // Lenovo's Once override was taken by the boot into the installed OS: the firmware's order boots it.
    expect(sys.Boot).toMatchObject({ BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' });
    expect(await bmc2.get(SLOT2)).toMatchObject({ Inserted: false });
    phaseTimes.provisioning = { total: run.seconds, server1: timings(run, 'server1'), server2: timings(run, 'server2') };

    // Giving a BMC back needs nothing from a run: --tags release alone takes server1's installed OS
    // down and clears its Continuous override, and nothing else runs.
    const before = logLength(bmc1);
    const release = await play('provision.yml', ['--limit', 'server1', '--tags', 'release'], 'release-only', 300_000);
    expect(release.code, JSON.stringify(failures(release))).toBe(0);
    expect(release.events.filter((e) => e.event === 'phase').map((e) => [e.server, e.phase, e.result])).toEqual([['server1', 'release', 'ok']]);
    expect(eventsSince(bmc1, before, 'reset').map((e) => e.type)[0]).toBe('GracefulShutdown');
    expect(eventsSince(bmc1, before, 'boot override')).toHaveLength(1);
    await untouched(bmc1, SLOT1);
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
