// The lab's Redfish contract over its real HTTPS endpoints (basic auth, Redfish errors, the status
// codes real BMCs use) and every quirk profile on a server that has them all; plus the lab's own
// life cycle: a second `up` reports the running lab, `down` leaves nothing behind.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { defaultLabOptions, labUp } from '../../lab/lab.js';
import { namespaceExists, namespacePids } from '../../lab/netns.js';
import { Bmc, LabService, startLab, until, type TestLab } from '../support/lab.js';
import { REPO } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img', 'initramfs-amd64.img');
const QUIRKS = ['eject-lag', 'post-lock', 'no-power-cycle', 'iso-only', 'manager-media-only'] as const;

describe('lab: Redfish contract and quirk profiles', { timeout: 120_000 }, () => {
  let lab: TestLab;
  let plain: Bmc;
  let quirky: Bmc;
  let svc: LabService;
  let isoUrl: string;
  let ukiUrl: string;

  beforeAll(async () => {
    lab = await startLab({ servers: 2, quirks: { server2: [...QUIRKS] }, bmcTimings: { ejectLagMs: 4_000, postMs: 12_000 } });
    plain = new Bmc(lab.ns, lab.d.servers[0]!);
    quirky = new Bmc(lab.ns, lab.d.servers[1]!);
    svc = new LabService(lab.ns, lab.d);
    ({ isoUrl, ukiUrl } = await svc.buildTiny('contract'));
  }, 120_000);

  afterAll(async () => {
    await lab?.down();
  }, 60_000);

  test('the description names every server with its BMC, MACs, disks and console', () => {
    expect(lab.d.namespace).toBe(lab.ns);
    expect(lab.d.serviceUrl).toBe('http://192.0.2.1:8080');
    expect(lab.d.servers.map((s) => s.name)).toEqual(['server1', 'server2']);
    for (const s of lab.d.servers) {
      expect(s.bmc.url).toMatch(/^https:\/\/198\.51\.100\.\d+$/);
      expect(s.macs).toHaveLength(2);
      expect(s.disks.map((d) => d.kind)).toEqual(['scsi-hd', 'nvme']);
      expect(s.disks[0]!.wwn).toMatch(/^0x[0-9a-f]{16}$/);
      expect(fs.existsSync(s.bmcLog)).toBe(true);
    }
    expect(new Set(lab.d.servers.flatMap((s) => s.macs)).size).toBe(4);
  });

  test('HTTPS with a self-signed certificate; the service root answers without credentials, nothing else does', async () => {
    const root = await plain.request('GET', '/redfish/v1', undefined, { auth: null });
    expect(root.status).toBe(200);
    expect(root.json()).toMatchObject({ '@odata.id': '/redfish/v1', '@odata.type': expect.stringMatching(/^#ServiceRoot\./), Systems: { '@odata.id': '/redfish/v1/Systems' } });
    for (const auth of [null, 'admin:wrong', 'root:' + plain.server.bmc.password]) {
      const r = await plain.request('GET', plain.system, undefined, { auth });
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toMatch(/^Basic /);
      expect(r.json<any>().error['@Message.ExtendedInfo'][0].MessageId).toMatch(/NoValidSession$/);
    }
    const sys = await plain.get(plain.system);
    expect(sys).toMatchObject({ Id: 'System.Embedded.1', SerialNumber: plain.server.serialNumber, UUID: plain.server.uuid, PowerState: 'Off' });
    const nics = await Promise.all((await plain.get(`${plain.system}/EthernetInterfaces`)).Members.map((m: any) => plain.get(m['@odata.id'])));
    expect(nics.map((n: any) => n.MACAddress)).toEqual(plain.server.macs);
    const storage = await plain.get(`${plain.system}/Storage/Storage`);
    const drives = await Promise.all(storage.Drives.map((m: any) => plain.get(m['@odata.id'])));
    expect(drives.map((d: any) => d.SerialNumber)).toEqual(plain.server.disks.map((d) => d.serial));
    expect(drives[0].Identifiers[0].DurableName.toLowerCase()).toBe(plain.server.disks[0]!.wwn!.slice(2));
    const mgr = await plain.get('/redfish/v1/Managers/BMC');
    expect(mgr.VirtualMedia['@odata.id']).toBe('/redfish/v1/Managers/BMC/VirtualMedia');
    expect(sys.VirtualMedia['@odata.id']).toBe(`${plain.system}/VirtualMedia`);
  });

  test('Redfish errors: 400 unknown ResetType and property, 404, 405 with Allow, 409 on a full slot, 400 on an image without Range support', async () => {
    const bad = await plain.reset('Reboot');
    expect(bad.status).toBe(400);
    expect(bad.json<any>().error).toMatchObject({ code: expect.any(String), message: expect.stringContaining('Reboot') });
    expect((await plain.setBoot({ BootSourceOverrideTarget: 'Floppy' })).status).toBe(400);
    expect((await plain.request('PATCH', plain.system, { AssetTagX: 'x' })).status).toBe(400);
    expect((await plain.request('GET', '/redfish/v1/Systems/nope')).status).toBe(404);
    const del = await plain.request('DELETE', plain.system);
    expect(del.status).toBe(405);
    expect(del.headers.allow).toContain('PATCH');
    // The service's /healthz gives a length but no Accept-Ranges: a BMC cannot stream it.
    const noRanges = await plain.insert(`${lab.d.serviceUrl}/healthz`);
    expect(noRanges.status).toBe(400);
    expect(noRanges.json<any>().error.message).toMatch(/Accept-Ranges/);
    expect((await plain.insert(isoUrl)).status).toBe(204);
    const full = await plain.insert(isoUrl.replace('boot.iso', 'uki.efi'));
    expect(full.status).toBe(409);
    // Both layouts show the same slot.
    expect((await plain.get('/redfish/v1/Managers/BMC/VirtualMedia/Cd')).Image).toBe(isoUrl);
    expect((await plain.eject()).status).toBe(204);
    expect((await plain.get('/redfish/v1/Managers/BMC/VirtualMedia/Cd')).Inserted).toBe(false);
    // https image URLs work too, without certificate checks (the service's lab CA is unknown to the BMC).
    const tls = await svc.buildTiny('contract', { tls: true });
    expect(tls.isoUrl).toMatch(/^https:/);
    expect((await plain.insert(tls.isoUrl)).status).toBe(204);
    expect((await plain.eject()).status).toBe(204);
  });

  test('quirk no-power-cycle: PowerCycle is not offered and is refused', async () => {
    const sys = await quirky.get(quirky.system);
    expect(sys.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues']).not.toContain('PowerCycle');
    expect((await plain.get(plain.system)).Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues']).toContain('PowerCycle');
    expect((await quirky.reset('PowerCycle')).status).toBe(400);
  });

  test('quirk manager-media-only: VirtualMedia exists under the Manager only', async () => {
    const sys = await quirky.get(quirky.system);
    expect(sys.VirtualMedia).toBeUndefined();
    expect((await quirky.request('GET', `${quirky.system}/VirtualMedia`)).status).toBe(404);
    expect((await quirky.request('GET', '/redfish/v1/Managers/BMC/VirtualMedia/Cd')).status).toBe(200);
  });

  test('quirk iso-only: image URLs must end in .iso', async () => {
    const r = await quirky.insert(ukiUrl, '/redfish/v1/Managers/BMC/VirtualMedia/Cd');
    expect(r.status).toBe(400);
    expect(r.json<any>().error.message).toMatch(/\.iso/);
  });

  test('quirk eject-lag: the slot reports the image for a few seconds after EjectMedia, and inserting then fails', async () => {
    const mv = '/redfish/v1/Managers/BMC/VirtualMedia/Cd';
    expect((await quirky.insert(isoUrl, mv)).status).toBe(204);
    expect((await quirky.eject(mv)).status).toBe(204);
    expect(await quirky.get(mv)).toMatchObject({ Inserted: true, Image: isoUrl });
    expect((await quirky.insert(isoUrl, mv)).status).toBe(409);
    await new Promise((r) => setTimeout(r, 4_500));
    expect(await quirky.get(mv)).toMatchObject({ Inserted: false, Image: null });
    expect((await quirky.insert(isoUrl, mv)).status).toBe(204);
    expect((await quirky.eject(mv)).status).toBe(204);
    await new Promise((r) => setTimeout(r, 4_500));
  });

  test('quirk post-lock: changes are refused with 400 UnableToModifyDuringSystemPOST while the server is in POST', async () => {
    expect((await quirky.reset('On')).status).toBe(204);
    await quirky.waitForPower('On', 30_000);
    const r = await quirky.setBoot({ BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Once' });
    expect(r.status).toBe(400);
    expect(r.json<any>().error['@Message.ExtendedInfo'][0].MessageId).toMatch(/UnableToModifyDuringSystemPOST$/);
    expect((await quirky.insert(isoUrl, '/redfish/v1/Managers/BMC/VirtualMedia/Cd')).status).toBe(400);
    // After POST the same change goes through.
    await new Promise((r2) => setTimeout(r2, 12_500));
    expect((await quirky.setBoot({ BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    expect((await quirky.reset('ForceOff')).status).toBe(204);
    await quirky.waitForPower('Off', 30_000);
    // The server without the quirk accepts changes at any time.
    expect((await plain.reset('On')).status).toBe(204);
    await plain.waitForPower('On', 30_000);
    expect((await plain.setBoot({ BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    expect((await plain.reset('ForceOff')).status).toBe(204);
    await plain.waitForPower('Off', 30_000);
  });

  test('a second `up` reports the running lab; `down` removes its processes, namespace and files', async () => {
    const again = await labUp(defaultLabOptions(REPO, { namespace: lab.ns, stateDir: lab.d.stateDir }));
    expect(again.created).toBe(false);
    expect(again.description.servers[0]!.bmc.password).toBe(plain.server.bmc.password);
    const pids = await namespacePids(lab.ns);
    expect(pids.length).toBeGreaterThanOrEqual(4); // dnsmasq, service, two BMCs
    await lab.down();
    expect(await namespaceExists(lab.ns)).toBe(false);
    expect(fs.existsSync(lab.d.stateDir)).toBe(false);
    // Gone, or a zombie its parent has not reaped yet (the processes of this test's own lab are our children).
    const gone = (pid: number) => {
      try {
        return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
      } catch {
        return true;
      }
    };
    await until('lab processes gone', 10_000, async () => (pids.every(gone) ? true : undefined), 200);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(lab.ns);
  });
});

describe('lab: bad options are refused before anything is made', () => {
  test.each([
    [{ servers: 0 }, /servers/],
    [{ memoryMiB: 512 }, /memory/],
    [{ quirks: { server9: ['iso-only'] } }, /no server named "server9"/],
    [{ quirks: { server1: ['flaky'] } }, /"flaky" is not a quirk/],
    [{ namespace: 'Bad Name!' }, /namespace/],
    [{ vlan: 4095 }, /vlan: 4095 is not a VLAN id from 1 to 4094/],
    [{ secondNic: 'spare' as 'data' }, /second NIC: "spare" is not data or provisioning/],
  ] as const)('%o', async (override, message) => {
    const opts = defaultLabOptions(REPO, { namespace: 'uodt-refused', stateDir: '/tmp/uodt-refused', ...(override as object) });
    await expect(labUp(opts)).rejects.toThrow(message);
    expect(await namespaceExists(opts.namespace)).toBe(false);
  });
});
