// The collection's Redfish modules against BMC profiles built from recordings of real BMCs (Dell
// iDRAC9, HPE iLO 5, Lenovo XCC): the recorded resource tree over the machine model and a fake driver,
// on loopback over HTTPS, each module run by `ansible localhost -m`. Each test names the behaviour it
// covers and fails when the orchestrator's handling of it is taken out; what the BMC answered is read
// from its own response log, what the server would boot from the machine's boot plan.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import type { Quirk } from '../../lab/bmc/machine/quirks.js';
import { SecureBootSetup } from '../../lab/bmc/machine/secure-boot.js';
import { secureBootKeyPair } from '../support/secure-boot.js';
import { tempDir } from '../support/service.js';
import { buildRedfishApp } from '../../lab/bmc/redfish/app.js';
import { setUpProfile } from '../../lab/bmc/redfish/profile-setup.js';
import type { Inventory } from '../../lab/bmc/redfish/resources.js';
import { makeMachine } from '../lab/bmc-fakes.js';
import { requireAnsible } from '../support/ansible.js';
import { REPO } from '../support/service.js';
import { certificate, module, PASS, until, USER } from '../support/redfish-modules.js';

requireAnsible();
const UKI = 'http://192.0.2.1:8080/artifacts/a/uki.efi';
const ISO = 'http://192.0.2.1:8080/artifacts/a/boot.iso';

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

/** A BMC of this profile on 127.0.0.1 over HTTPS, and the log of what it answered. */
async function profiled(name: string, quirks: Quirk[] = [], secureBoot?: SecureBootSetup) {
  const setup = setUpProfile(name, quirks);
  const m = makeMachine(setup.profile.quirks, { powerOnDelayMs: 20, powerCycleOffMs: 20, ejectLagMs: 1_500, postMs: 200, onRefusedMs: 2_000, resetGapMs: 2_000 },
    { ...setup.capabilities(), ...(secureBoot ? { secureBoot } : {}) });
  const inventory: Inventory = {
    systemId: setup.systemId ?? 'srv1', name: 'server-1', uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01', serialNumber: 'LAB0001', memoryMiB: 2048, cpus: 2,
    nics: [{ mac: '52:54:00:00:01:01' }], disks: [{ kind: 'nvme', serial: 'NVME1SER', sizeGiB: 4 }],
  };
  const app = buildRedfishApp({
    inventory, machine: m.machine, username: USER, password: PASS, bmcUuid: '7d2f4e8a-1111-4222-8333-944455556666', logLevel: 'silent', https: await certificate(),
    ...(setup.recording ? { recorded: { recording: setup.recording, profile: setup.profile } } : {}),
  });
  const answers: { method: string; url: string; status: number }[] = [];
  app.addHook('onResponse', async (req, reply) => {
    answers.push({ method: req.method, url: req.url, status: reply.statusCode });
  });
  apps.push(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { ...m, answers, host: `127.0.0.1:${(app.server.address() as { port: number }).port}` };
}

describe('Dell iDRAC9 (recorded): BIOS HTTP boot route, System-level slots, PowerCycle', { timeout: 120_000 }, () => {
  test('redfish_info reads the recorded System, the CD slot among the System\'s slots, and the BIOS route', async () => {
    const b = await profiled('dell');
    const r = await module('redfish_info', b.host, {});
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.system_id).toBe('System.Embedded.1');
    // Under the System (iDRAC 6 lists its media there too), not the Manager's legacy CD path.
    expect(r.cd_slot).toBe('/redfish/v1/Systems/System.Embedded.1/VirtualMedia/1');
    expect(r.http_boot_uri_supported).toBe(false);
    expect(r.http_boot_route).toBe('bios-dell');
    expect(r.reset_types).toContain('PowerCycle');
  });

  test('uefi-http without HttpBootUri: HttpDev1* with a static address, committed OnReset, fetched at the next power-on', async () => {
    const b = await profiled('dell');
    const r = await module('redfish_boot', b.host, {
      http_boot_uri: UKI, http_boot_address: '192.0.2.57/24', http_boot_gateway: '192.0.2.1', http_boot_dns: ['192.0.2.1'], target: 'UefiHttp', enabled: 'Once',
    });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.http_boot_route).toBe('bios-dell');
    expect(b.machine.firmware!.pendingAttributes).toMatchObject({ HttpDev1EnDis: 'Enabled', HttpDev1Uri: UKI, HttpDev1DhcpEnDis: 'Disabled', HttpDev1Ip: '192.0.2.57', HttpDev1Mask: '255.255.255.0' });
    // iDRAC applies pending BIOS settings only through a job: without the apply time nothing would boot.
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    expect(b.machine.lastBoot).toEqual({ device: 'http', httpBootUri: UKI, httpBootAddress: { address: '192.0.2.57', prefixLength: 24, gateway: '192.0.2.1', dns: ['192.0.2.1'] } });
    expect(b.machine.firmware!.attributes.HttpDev1Uri).toBe(UKI);
  });

  test('iso-only and eject-lag: the service\'s ISO URL (…/boot.iso) goes into the slot, replacing stale media once it reads gone', async () => {
    const b = await profiled('dell');
    await b.machine.insertMedia('http://192.0.2.1:8080/artifacts/old/boot.iso', true, true);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia')).map((a) => a.status)).toEqual([204]);
    expect(b.machine.mediaSlot).toMatchObject({ image: ISO, inserted: true });
  });

  test('on-refused-after-off and PowerCycle: a cycle of a running server is one PowerCycle', async () => {
    const b = await profiled('dell');
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    const r = await module('redfish_power', b.host, { state: 'cycle', power_timeout: 30 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.how).toBe('PowerCycle');
  });
});

describe('HPE iLO 5 (recorded): Manager-only slot 2, weak ETags with If-Match required, UrlBootFile, no PowerCycle', { timeout: 120_000 }, () => {
  test('the CD is slot 2 under the Manager; InsertMedia there', async () => {
    const b = await profiled('hpe');
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.slot).toBe('/redfish/v1/Managers/1/VirtualMedia/2');
    expect(b.machine.mediaSlot).toMatchObject({ image: ISO, inserted: true });
  });

  test('if-match-required: the boot override PATCH sent with the weak ETag (412) is sent again strong and taken', async () => {
    const b = await profiled('hpe');
    const r = await module('redfish_boot', b.host, { target: 'Cd', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.method === 'PATCH').map((a) => a.status)).toEqual([412, 204]);
    expect(b.machine.bootOverride).toMatchObject({ target: 'Cd', enabled: 'Once' });
  });

  test('UrlBootFile through the lower-case bios/settings path, with its ETag (428 without), applied at the next power-on', async () => {
    const b = await profiled('hpe');
    const r = await module('redfish_boot', b.host, { http_boot_uri: UKI, target: 'UefiHttp', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.http_boot_route).toBe('bios-hpe');
    const settings = b.answers.filter((a) => a.method === 'PATCH' && a.url.startsWith('/redfish/v1/systems/1/bios/settings'));
    expect(settings.map((a) => a.status)).toEqual([412, 204]);
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    expect(b.machine.lastBoot).toEqual({ device: 'http', httpBootUri: UKI });
  });

  test('no PowerCycle recorded: a cycle is ForceOff then On (reset-too-soon retried)', async () => {
    const b = await profiled('hpe');
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    await new Promise((r) => setTimeout(r, 2_100));
    const r = await module('redfish_power', b.host, { state: 'cycle', power_timeout: 30 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.how).toBe('ForceOff+On');
    expect(b.log.filter((l) => l.event === 'reset').map((l) => l.fields?.type)).toContain('ForceOff');
  });
});

describe('Lenovo XCC (recorded): PATCH-only slots, RDOC unusable, Once-only overrides, no HTTP boot', { timeout: 120_000 }, () => {
  test('media by PATCH on the first usable slot; ejected by PATCH', async () => {
    const b = await profiled('lenovo');
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.slot).toBe('/redfish/v1/Systems/1/VirtualMedia/EXT1');
    expect(b.answers.filter((a) => a.method !== 'GET' && !a.url.includes('/SessionService/')).map((a) => `${a.method} ${a.url} ${a.status}`)).toEqual(['PATCH /redfish/v1/Systems/1/VirtualMedia/EXT1 204']);
    expect(b.machine.mediaSlot).toMatchObject({ image: ISO, inserted: true });
    const e = await module('redfish_media', b.host, { state: 'ejected' });
    expect(e.failed, e.msg).toBeFalsy();
    expect(b.machine.mediaSlot.inserted).toBe(false);
  });

  test('Continuous is not allowed: the disk boot is set Once, with a warning', async () => {
    const b = await profiled('lenovo');
    const r = await module('redfish_boot', b.host, { target: 'Hdd', enabled: 'Continuous' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.enabled).toBe('Once');
    expect(r.warnings.join(' ')).toMatch(/allows only Once and Disabled/);
    expect(b.machine.bootOverride).toMatchObject({ target: 'Hdd', enabled: 'Once' });
  });

  test('uefi-http on a BMC with neither HttpBootUri nor a BIOS route fails naming what it lacks, and changes nothing', async () => {
    const b = await profiled('lenovo');
    const r = await module('redfish_boot', b.host, { http_boot_uri: UKI, target: 'UefiHttp', enabled: 'Once' });
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/no Boot\.HttpBootUri and its BIOS has no HTTP boot device setting/);
    expect(b.answers.filter((a) => a.method !== 'GET' && !a.url.includes('/SessionService/'))).toEqual([]);
  });

  test('reset types from the recording: no PowerCycle, so a cycle is ForceOff then On', async () => {
    const b = await profiled('lenovo');
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    const r = await module('redfish_power', b.host, { state: 'cycle', power_timeout: 30 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.how).toBe('ForceOff+On');
  });
});

describe('Supermicro behaviours on the standard BMC', { timeout: 120_000 }, () => {
  test('usbcd-only: the virtual CD override is sent as UsbCd with its mode, so it is not dropped to Legacy', async () => {
    const b = await profiled('standard', ['usbcd-only']);
    await b.machine.insertMedia(ISO, true, true);
    const r = await module('redfish_boot', b.host, { target: 'Cd', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.machine.bootOverride).toMatchObject({ target: 'UsbCd', enabled: 'Once', mode: 'UEFI' });
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    expect(b.machine.lastBoot?.device).toBe('cd');
  });

  test('imagename-after-eject: an eject is done when Inserted and Image clear, whatever ImageName says', async () => {
    const b = await profiled('standard', ['imagename-after-eject']);
    await b.machine.insertMedia(ISO, true, true);
    const r = await module('redfish_media', b.host, { state: 'ejected', eject_timeout: 5 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.machine.mediaSlot.inserted).toBe(false);
  });
});

describe('documented behaviours of other BMCs, on the standard BMC', { timeout: 120_000 }, () => {
  test('session-only: Basic refused; the modules log in with a Redfish session and go on', async () => {
    const b = await profiled('standard', ['session-only']);
    const r = await module('redfish_boot', b.host, { target: 'Cd', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.method === 'POST' && a.url === '/redfish/v1/SessionService/Sessions').map((a) => a.status)).toContain(201);
    expect(b.answers.filter((a) => a.method === 'PATCH').map((a) => a.status)).toEqual([204]);
  });

  test('no-managed-by with manager-media-only: the slot is found through the Managers collection', async () => {
    const b = await profiled('standard', ['no-managed-by', 'manager-media-only']);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.slot).toBe('/redfish/v1/Managers/BMC/VirtualMedia/Cd');
  });

  test('kvm-slot-first: the KVM console\'s CD slot (no action, no PATCH) is passed over', async () => {
    const b = await profiled('standard', ['kvm-slot-first']);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.slot).toBe('/redfish/v1/Systems/srv1/VirtualMedia/Cd');
  });

  test('boot-in-settings (iDRAC10): the override is written to the System\'s Settings resource', async () => {
    const b = await profiled('standard', ['boot-in-settings']);
    const r = await module('redfish_boot', b.host, { target: 'Cd', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.method === 'PATCH').map((a) => `${a.url} ${a.status}`)).toEqual(['/redfish/v1/Systems/srv1/Settings 204']);
    expect(b.machine.bootOverride).toMatchObject({ target: 'Cd', enabled: 'Once' });
  });

  test('https-only-media: an http:// image is refused at once with the BMC\'s message; the https:// one (tls: true) is taken', async () => {
    const b = await profiled('standard', ['https-only-media']);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO, change_delay: 5 });
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/^Insert the media: HTTP 400 .*takes https:\/\/ images only/);
    expect(b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia')).map((a) => a.status)).toEqual([400]);
    const https = ISO.replace('http://192.0.2.1:8080', 'https://192.0.2.1:8443');
    const ok = await module('redfish_media', b.host, { state: 'inserted', image: https });
    expect(ok.failed, ok.msg).toBeFalsy();
    expect(b.machine.mediaSlot).toMatchObject({ image: https, inserted: true });
  });

  test('media-licence-required: the refusal is reported at once with the BMC\'s message, not retried for a minute', async () => {
    const b = await profiled('standard', ['media-licence-required']);
    const started = Date.now();
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO, change_delay: 5 });
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/^Insert the media: HTTP 400 iLO\.2\.14\.LicenseKeyRequired: A license key is required/);
    expect(b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia')).map((a) => a.status)).toEqual([400]);
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe('Secure Boot through Redfish (redfish_secure_boot)', { timeout: 120_000 }, () => {
  const keys = tempDir('contract-sb');
  const pem = (name: string) => readFileSync(secureBootKeyPair(keys, name).cert, 'utf8');
  const platform = pem('platform');
  const labDb = pem('lab-db');
  const service = pem('service');
  const firmware = (enabled: boolean) => new SecureBootSetup({ pk: platform, kek: [platform] }, [labDb], enabled);

  test('Dell: the certificate enrolled once (POST to db), the switch turned on, and the state found returned', async () => {
    const sb = firmware(false);
    const b = await profiled('dell', [], sb);
    const r = await module('redfish_secure_boot', b.host, { certificate: service, enabled: true });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r).toMatchObject({ changed: true, enrolled: true, found: { enabled: false, current_boot: 'Disabled' } });
    expect(sb.certificates().map((c) => c.pem.trim())).toEqual([labDb.trim(), service.trim()]);
    expect(sb.enabled).toBe(true);
    const again = await module('redfish_secure_boot', b.host, { certificate: service, enabled: true });
    expect(again).toMatchObject({ changed: false, enrolled: false, found: { enabled: true } });
    expect(b.answers.filter((a) => a.method === 'POST' && a.url.endsWith('/db/Certificates')).map((a) => a.status)).toEqual([201]);
    const info = await module('redfish_info', b.host, {});
    expect(info.secure_boot).toEqual({ enabled: true, current_boot: 'Disabled', mode: 'DeployedMode' });
  });

  test('HPE: no SecureBootDatabases, so it stops saying how to enroll by hand; then only the switch', async () => {
    const sb = firmware(false);
    const b = await profiled('hpe', [], sb);
    const r = await module('redfish_secure_boot', b.host, { certificate: service, enabled: true });
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/offers no SecureBootDatabases .*enroll the certificate with SHA-256 [0-9a-f]{64} in db by hand/);
    expect(sb.enabled).toBe(false);
    const byHand = await module('redfish_secure_boot', b.host, { certificate: service, certificate_enrolled_by_hand: true, enabled: true });
    expect(byHand.failed, byHand.msg).toBeFalsy();
    expect(sb.enabled).toBe(true);
    // iLO's If-Match rule holds here too: the weak ETag refused, the strong one taken.
    expect(b.answers.filter((a) => a.method === 'PATCH').map((a) => a.status)).toEqual([412, 204]);
  });

  test('the give-back sets Secure Boot back as found; without secure_boot_enabled it is left alone', async () => {
    const sb = firmware(true);
    const b = await profiled('dell', [], sb);
    const keep = await module('redfish_release', b.host, { graceful_timeout: 0 });
    expect(keep.failed, keep.msg).toBeFalsy();
    expect(sb.enabled).toBe(true);
    const r = await module('redfish_release', b.host, { graceful_timeout: 0, secure_boot_enabled: false });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.done).toContain('set Secure Boot back as found');
    expect(sb.enabled).toBe(false);
  });

  test('a BMC without a SecureBoot resource: the message says what to do', async () => {
    const b = await profiled('standard');
    const r = await module('redfish_secure_boot', b.host, { enabled: true });
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/^Read Secure Boot: this BMC has no Redfish SecureBoot resource/);
  });
});

describe('a new vendor is a directory holding a recording', { timeout: 60_000 }, () => {
  test('any recording directory is a profile: its System, its slots and its BIOS route read from it, no quirks', async () => {
    const dir = path.join(REPO, 'lab/bmc/profiles/recordings/hpe');
    expect(setUpProfile(dir).profile.quirks).toEqual([]);
    const b = await profiled(dir);
    const r = await module('redfish_info', b.host, {});
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.system_id).toBe('1');
    expect(r.cd_slot).toBe('/redfish/v1/Managers/1/VirtualMedia/2');
    expect(r.http_boot_route).toBe('bios-hpe');
    expect(r.reset_types).not.toContain('PowerCycle');
  });
});

describe('a profile that is neither a name nor a recording', { timeout: 60_000 }, () => {
  test('a profile directory that is not a recording is refused naming it', () => {
    expect(() => setUpProfile('/nonexistent')).toThrow(/BMC profile "\/nonexistent": not one of standard, dell, hpe, lenovo/);
  });
});
