// The virtual BMC serving recordings of real BMCs (profiles dell, hpe, lenovo) over the machine model
// and a fake driver, through app.inject: the recorded tree with live state over it, and a clear
// Redfish error naming the property for everything the recording or the model does not allow.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import { FirmwareSetup } from '../../lab/bmc/machine/firmware.js';
import { buildRedfishApp } from '../../lab/bmc/redfish/app.js';
import { setUpProfile } from '../../lab/bmc/redfish/profile-setup.js';
import { makeMachine, sleep } from './bmc-fakes.js';

const AUTH = { authorization: `Basic ${Buffer.from('admin:s3cret').toString('base64')}` };
const UKI = 'http://192.0.2.1:8080/artifacts/a/uki.efi';
const ISO = 'http://192.0.2.1:8080/artifacts/a/boot.iso';

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

function setup(profile: string) {
  const s = setUpProfile(profile);
  const m = makeMachine(s.profile.quirks, { powerOnDelayMs: 10, powerCycleOffMs: 10, ejectLagMs: 100, postMs: 50, onRefusedMs: 50, resetGapMs: 50 }, s.capabilities());
  const app = buildRedfishApp({
    inventory: { systemId: s.systemId!, name: 'server-1', uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01', serialNumber: 'LAB0001', memoryMiB: 2048, cpus: 2, nics: [{ mac: '52:54:00:00:01:01' }], disks: [] },
    machine: m.machine, username: 'admin', password: 's3cret', bmcUuid: '7d2f4e8a-1111-4222-8333-944455556666', logLevel: 'silent',
    recorded: { recording: s.recording!, profile: s.profile },
  });
  apps.push(app);
  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url, headers: { ...AUTH, ...headers } });
  const send = (method: 'POST' | 'PATCH' | 'DELETE', url: string, body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method, url, headers: { ...AUTH, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
  return { ...m, app, get, send };
}

function messageId(res: { statusCode: number; json(): any }): string {
  return res.json().error['@Message.ExtendedInfo'][0].MessageId;
}

describe('the recorded tree with live state over it', () => {
  test('Dell: the recorded System with the lab server\'s identity, power and override; ETags strong as recorded', async () => {
    const b = setup('dell');
    const r = await b.get('/redfish/v1/Systems/System.Embedded.1');
    expect(r.statusCode).toBe(200);
    const sys = r.json();
    expect(sys).toMatchObject({ Id: 'System.Embedded.1', Manufacturer: 'Dell Inc.', UUID: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01', SerialNumber: 'LAB0001', PowerState: 'Off' });
    expect(sys.Boot['BootSourceOverrideTarget@Redfish.AllowableValues']).toContain('UefiHttp');
    expect(sys.Boot.HttpBootUri).toBeUndefined();
    expect(r.headers.etag).toMatch(/^"[0-9a-f]{16}"$/);
    expect(r.headers.allow).toBe('GET, PATCH, HEAD');
    // A resource the lab does not drive answers as recorded; one not recorded is a 404.
    expect((await b.get('/redfish/v1/Chassis/System.Embedded.1')).statusCode).toBe(200);
    expect((await b.get('/redfish/v1/Systems/System.Embedded.1/Memory')).statusCode).toBe(404);
  });

  test('HPE: paths without case or trailing slash, weak ETags, the lower-case Bios', async () => {
    const b = setup('hpe');
    const bios = await b.get('/redfish/v1/Systems/1/Bios');
    expect(bios.statusCode).toBe(200);
    expect(bios.json()['@odata.id']).toBe('/redfish/v1/systems/1/bios/');
    expect(bios.headers.etag).toMatch(/^W\/"/);
    expect((await b.get('/redfish/v1/systems/1/bios/settings/')).statusCode).toBe(200);
  });

  test('a recorded resource the lab does not change answers 405 to a PATCH, naming what it allows', async () => {
    const b = setup('dell');
    const r = await b.send('PATCH', '/redfish/v1/Managers/iDRAC.Embedded.1', { Name: 'x' });
    expect(r.statusCode).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
  });
});

describe('changes checked against the recording and the model', () => {
  test('a boot override value outside the recorded AllowableValues is refused naming the property', async () => {
    const b = setup('lenovo');
    const r = await b.send('PATCH', '/redfish/v1/Systems/1', { Boot: { BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Continuous' } });
    expect(r.statusCode).toBe(400);
    expect(messageId(r)).toMatch(/PropertyValueNotInList$/);
    expect(r.json().error.message).toMatch(/Boot\/BootSourceOverrideEnabled.*Once, Disabled/);
    expect(b.machine.bootOverride.target).toBe('None');
  });

  test('a target the recording allows but the lab does not model is refused saying so', async () => {
    const b = setup('dell');
    const r = await b.send('PATCH', '/redfish/v1/Systems/System.Embedded.1', { Boot: { BootSourceOverrideTarget: 'Pxe' } });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.message).toMatch(/Pxe/);
  });

  test('reset types: one the recording does not list, one the model cannot carry out', async () => {
    const b = setup('hpe');
    const cycle = await b.send('POST', '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', { ResetType: 'PowerCycle' });
    expect(cycle.statusCode).toBe(400);
    expect(messageId(cycle)).toMatch(/ActionParameterValueNotInList$/);
    const nmi = await b.send('POST', '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset', { ResetType: 'Nmi' });
    expect(nmi.statusCode).toBe(400);
    expect(nmi.json().error.message).toMatch(/does not model ResetType Nmi/);
  });

  test('BIOS settings: unknown attribute, wrong type, unsupported apply time each named; pending until the next power-on', async () => {
    const b = setup('dell');
    const settings = '/redfish/v1/Systems/System.Embedded.1/Bios/Settings';
    const unknown = await b.send('PATCH', settings, { Attributes: { NoSuchThing: 'x' } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Attributes/NoSuchThing']);
    const type = await b.send('PATCH', settings, { Attributes: { HttpDev1VlanId: 'ten' } });
    expect(type.statusCode).toBe(400);
    expect(type.json().error.message).toMatch(/HttpDev1VlanId takes a number/);
    const when = await b.send('PATCH', settings, { Attributes: { HttpDev1Uri: UKI }, '@Redfish.SettingsApplyTime': { ApplyTime: 'Immediate' } });
    expect(when.statusCode).toBe(400);
    expect(when.json().error.message).toMatch(/ApplyTime.*OnReset/);
    const mask = await b.send('PATCH', settings, { Attributes: { HttpDev1EnDis: 'Enabled', HttpDev1Uri: UKI, HttpDev1DhcpEnDis: 'Disabled', HttpDev1Ip: '192.0.2.9', HttpDev1Mask: '255.0.255.0' } });
    expect(mask.statusCode).toBe(400);
    expect(mask.json().error.message).toMatch(/HttpDev1Mask/);
    expect(b.machine.firmware!.pendingAttributes).toEqual({});

    expect((await b.send('PATCH', settings, { Attributes: { HttpDev1EnDis: 'Enabled', HttpDev1Uri: UKI }, '@Redfish.SettingsApplyTime': { ApplyTime: 'OnReset' } })).statusCode).toBe(204);
    expect((await b.get(settings)).json().Attributes).toEqual({ HttpDev1EnDis: 'Enabled', HttpDev1Uri: UKI });
    expect((await b.get('/redfish/v1/Systems/System.Embedded.1/Bios')).json().Attributes.HttpDev1Uri).toBe('');
    b.machine.reset('On');
    await b.machine.settled();
    expect((await b.get('/redfish/v1/Systems/System.Embedded.1/Bios')).json().Attributes.HttpDev1Uri).toBe(UKI);
    expect((await b.get(settings)).json().Attributes).toEqual({});
  });

  test('Dell without an apply time: the settings stay pending through the power-on (no job)', async () => {
    const b = setup('dell');
    await b.send('PATCH', '/redfish/v1/Systems/System.Embedded.1/Bios/Settings', { Attributes: { HttpDev1Uri: UKI } });
    b.machine.reset('On');
    await b.machine.settled();
    expect(b.machine.firmware!.attributes.HttpDev1Uri).toBe('');
    expect(b.machine.firmware!.pendingAttributes).toEqual({ HttpDev1Uri: UKI });
  });

  test('Lenovo: RDOC slots are GET only; one CD drive behind every slot: a second slot is refused while the first holds media', async () => {
    const b = setup('lenovo');
    const rdoc = await b.send('PATCH', '/redfish/v1/Managers/1/VirtualMedia/RDOC1', { Image: ISO, Inserted: true });
    expect(rdoc.statusCode).toBe(405);
    expect((await b.send('PATCH', '/redfish/v1/Systems/1/VirtualMedia/EXT1', { Image: ISO, Inserted: true, WriteProtected: true })).statusCode).toBe(204);
    expect((await b.get('/redfish/v1/Managers/1/VirtualMedia/EXT1')).json()).toMatchObject({ Image: ISO, Inserted: true, ConnectedVia: 'URI' });
    const second = await b.send('PATCH', '/redfish/v1/Systems/1/VirtualMedia/Remote1', { Image: ISO, Inserted: true, WriteProtected: true });
    expect(second.statusCode).toBe(409);
    expect(second.json().error.message).toMatch(/in use by slot EXT1/);
    expect((await b.get('/redfish/v1/Systems/1/VirtualMedia/Remote1')).json()).toMatchObject({ Image: null, Inserted: false });
  });

  test('HPE: Floppy/USB slot 1 refuses a CD image, naming its media types', async () => {
    const b = setup('hpe');
    const r = await b.send('POST', '/redfish/v1/Managers/1/VirtualMedia/1/Actions/VirtualMedia.InsertMedia', { Image: ISO });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.message).toMatch(/slot 1: its media types are not CD or DVD/);
    await sleep(1);
  });
});

describe('FirmwareSetup', () => {
  test('a committed pending set applies once; an uncommitted one waits when a commit is needed', () => {
    const f = new FirmwareSetup({ A: 'x', N: 1 }, () => null, true);
    f.stage({ A: 'y' }, false);
    expect(f.applyPending()).toEqual([]);
    f.stage({ N: 2 }, true);
    expect(f.applyPending()).toEqual(['A', 'N']);
    expect(f.attributes).toEqual({ A: 'y', N: 2 });
    expect(f.applyPending()).toEqual([]);
  });
});
