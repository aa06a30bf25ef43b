// The virtual BMC's Redfish adapter over a real machine model and a fake driver, through app.inject:
// auth, resource tree, actions, PATCH, ETags and the Redfish error bodies.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import type { Quirk } from '../../lab/bmc/machine/quirks.js';
import { buildRedfishApp } from '../../lab/bmc/redfish/app.js';
import type { Inventory } from '../../lab/bmc/redfish/resources.js';
import { makeMachine, sleep } from './bmc-fakes.js';

const USER = 'admin';
const PASS = 's3cret';
const AUTH = { authorization: `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}` };
const SYS = '/redfish/v1/Systems/srv1';
const MGR = '/redfish/v1/Managers/BMC';
const ISO = 'http://10.0.2.2:8080/artifacts/abc/boot.iso';

const INVENTORY: Inventory = {
  systemId: 'srv1',
  name: 'server-1',
  uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01',
  serialNumber: 'LAB0001',
  memoryMiB: 2048,
  cpus: 2,
  nics: [{ mac: '52:54:00:00:01:01' }, { mac: '52:54:00:00:01:02' }],
  disks: [
    { kind: 'scsi-hd', serial: 'DISK0SER', wwn: '0x5000c500a1b2c3d4', sizeGiB: 8 },
    { kind: 'nvme', serial: 'NVME1SER', sizeGiB: 4 },
  ],
};

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

function setup(quirks: Quirk[] = []) {
  const m = makeMachine(quirks);
  const app = buildRedfishApp({ inventory: INVENTORY, machine: m.machine, username: USER, password: PASS, bmcUuid: '7d2f4e8a-1111-4222-8333-944455556666', logLevel: 'silent' });
  apps.push(app);
  const get = (url: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url, headers: { ...AUTH, ...headers } });
  const send = (method: 'POST' | 'PATCH' | 'DELETE' | 'PUT', url: string, body?: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method, url, headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }) });
  return { ...m, app, get, send };
}

/** Parsed response bodies, read loosely: the assertions check the shapes. */
type Json = Record<string, any>;

/** A Redfish error body: error.code, error.message and one ExtendedInfo entry with this MessageId. */
function expectRedfishError(res: { statusCode: number; json(): unknown }, status: number, messageId: string | RegExp): Json {
  expect(res.statusCode).toBe(status);
  const body = res.json() as Json;
  expect(typeof body.error.code).toBe('string');
  expect(typeof body.error.message).toBe('string');
  const info = body.error['@Message.ExtendedInfo'];
  expect(Array.isArray(info) && info.length).toBeTruthy();
  expect(info[0].MessageId).toMatch(messageId);
  expect(typeof info[0].Message).toBe('string');
  return body;
}

/** The properties every Redfish resource must have. */
function expectResource(body: Json, type: RegExp, path: string) {
  expect(body['@odata.id']).toBe(path);
  expect(body['@odata.type']).toMatch(type);
  expect(typeof body.Id).toBe('string');
  expect(typeof body.Name).toBe('string');
}

function expectCollection(body: Json, path: string, members: string[]) {
  expect(body['@odata.id']).toBe(path);
  expect(body['@odata.type']).toMatch(/^#\w+Collection\.\w+Collection$/);
  expect(typeof body.Name).toBe('string');
  expect(body['Members@odata.count']).toBe(members.length);
  expect(body.Members).toEqual(members.map((m) => ({ '@odata.id': m })));
}

describe('authentication', () => {
  test('the service root answers without credentials', async () => {
    const { app } = setup();
    for (const url of ['/redfish/v1', '/redfish/v1/', '/redfish']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
    }
    const root = (await app.inject({ method: 'GET', url: '/redfish/v1/' })).json() as Json;
    expectResource(root, /^#ServiceRoot\.v1_\d+_\d+\.ServiceRoot$/, '/redfish/v1');
    expect(root.Systems).toEqual({ '@odata.id': '/redfish/v1/Systems' });
    expect(root.Managers).toEqual({ '@odata.id': '/redfish/v1/Managers' });
    expect(typeof root.RedfishVersion).toBe('string');
  });

  test.each([
    ['no credentials', {}],
    ['a wrong password', { authorization: `Basic ${Buffer.from(`${USER}:nope`).toString('base64')}` }],
    ['a longer password', { authorization: `Basic ${Buffer.from(`${USER}:${PASS}x`).toString('base64')}` }],
    ['another scheme', { authorization: 'Bearer abc' }],
  ])('everything else is 401 with %s', async (_, headers) => {
    const { app, driver } = setup();
    for (const [method, url] of [['GET', '/redfish/v1/Systems'], ['GET', SYS], ['GET', '/redfish/v1/Nope'], ['POST', `${SYS}/Actions/ComputerSystem.Reset`]] as const) {
      const res = await app.inject({ method, url, headers: { ...headers, 'content-type': 'application/json' }, ...(method === 'POST' ? { payload: '{"ResetType":"On"}' } : {}) });
      expectRedfishError(res, 401, /\.NoValidSession$/);
      expect(res.headers['www-authenticate']).toMatch(/^Basic realm=/);
    }
    expect(driver.calls).toEqual([]);
  });
});

describe('resource tree', () => {
  test('Systems → system → EthernetInterfaces → NICs', async () => {
    const { get } = setup();
    const systems = await get('/redfish/v1/Systems');
    expect(systems.statusCode).toBe(200);
    expect(systems.headers['odata-version']).toBe('4.0');
    expect(systems.headers['content-type']).toMatch(/^application\/json/);
    expectCollection(systems.json() as Json, '/redfish/v1/Systems', [SYS]);

    const sys = (await get(SYS)).json() as Json;
    expectResource(sys, /^#ComputerSystem\.v1_\d+_\d+\.ComputerSystem$/, SYS);
    expect(sys).toMatchObject({ Id: 'srv1', UUID: INVENTORY.uuid, SerialNumber: 'LAB0001', PowerState: 'Off' });
    expect(sys.Boot).toMatchObject({ BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled', BootSourceOverrideMode: 'UEFI', HttpBootUri: null });
    expect(sys.Boot['BootSourceOverrideTarget@Redfish.AllowableValues']).toEqual(expect.arrayContaining(['Cd', 'Hdd', 'UefiHttp']));
    expect(sys.Actions['#ComputerSystem.Reset'].target).toBe(`${SYS}/Actions/ComputerSystem.Reset`);
    expect(sys.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues']).toContain('PowerCycle');
    expect(sys.Links.ManagedBy).toEqual([{ '@odata.id': MGR }]);

    const nics = (await get(sys.EthernetInterfaces['@odata.id'])).json() as Json;
    expectCollection(nics, `${SYS}/EthernetInterfaces`, [`${SYS}/EthernetInterfaces/NIC1`, `${SYS}/EthernetInterfaces/NIC2`]);
    const macs: string[] = [];
    for (const m of nics.Members) {
      const nic = (await get(m['@odata.id'])).json() as Json;
      expectResource(nic, /^#EthernetInterface\.v1_\d+_\d+\.EthernetInterface$/, m['@odata.id']);
      macs.push(nic.MACAddress);
    }
    expect(macs).toEqual(INVENTORY.nics.map((n) => n.mac));
    expect((await get(`${SYS}/EthernetInterfaces/NIC3`)).statusCode).toBe(404);
  });

  test('Storage → Drives with serials and WWNs', async () => {
    const { get } = setup();
    const sys = (await get(SYS)).json() as Json;
    const storages = (await get(sys.Storage['@odata.id'])).json() as Json;
    expectCollection(storages, `${SYS}/Storage`, [`${SYS}/Storage/Storage`]);
    const storage = (await get(storages.Members[0]['@odata.id'])).json() as Json;
    expectResource(storage, /^#Storage\.v1_\d+_\d+\.Storage$/, `${SYS}/Storage/Storage`);
    expect(storage.Drives).toHaveLength(2);
    const drives = await Promise.all(storage.Drives.map(async (d: Json) => (await get(d['@odata.id'])).json() as Json));
    expectResource(drives[0]!, /^#Drive\.v1_\d+_\d+\.Drive$/, storage.Drives[0]['@odata.id']);
    expect(drives[0]).toMatchObject({ SerialNumber: 'DISK0SER', CapacityBytes: 8 * 1024 ** 3, Protocol: 'SAS' });
    expect(drives[0]!.Identifiers).toEqual([{ DurableName: '5000C500A1B2C3D4', DurableNameFormat: 'NAA' }]);
    expect(drives[1]).toMatchObject({ SerialNumber: 'NVME1SER', Protocol: 'NVMe', Identifiers: [] });
    expect((await get(`${SYS}/Storage/Storage/Drives/Disk2`)).statusCode).toBe(404);
  });

  test('Managers/BMC links the VirtualMedia; both VirtualMedia show the same slot', async () => {
    const { get, machine } = setup();
    expectCollection((await get('/redfish/v1/Managers')).json() as Json, '/redfish/v1/Managers', [MGR]);
    const mgr = (await get(MGR)).json() as Json;
    expectResource(mgr, /^#Manager\.v1_\d+_\d+\.Manager$/, MGR);
    expect(mgr.ManagerType).toBe('BMC');
    expect(mgr.VirtualMedia).toEqual({ '@odata.id': `${MGR}/VirtualMedia` });
    expect(mgr.Links.ManagerForServers).toEqual([{ '@odata.id': SYS }]);

    const sys = (await get(SYS)).json() as Json;
    expect(sys.VirtualMedia).toEqual({ '@odata.id': `${SYS}/VirtualMedia` });
    await machine.insertMedia(ISO);
    for (const base of [`${SYS}/VirtualMedia`, `${MGR}/VirtualMedia`]) {
      expectCollection((await get(base)).json() as Json, base, [`${base}/Cd`]);
      const cd = (await get(`${base}/Cd`)).json() as Json;
      expectResource(cd, /^#VirtualMedia\.v1_\d+_\d+\.VirtualMedia$/, `${base}/Cd`);
      expect(cd).toMatchObject({ Image: ISO, ImageName: 'boot.iso', Inserted: true, WriteProtected: true, ConnectedVia: 'URI', TransferProtocolType: 'HTTP' });
      expect(cd.MediaTypes).toContain('CD');
      expect(cd.Actions['#VirtualMedia.InsertMedia'].target).toBe(`${base}/Cd/Actions/VirtualMedia.InsertMedia`);
    }
  });

  test('an image URL with a stray % still renders', async () => {
    const { get, machine } = setup();
    await machine.insertMedia('http://10.0.2.2:8080/artifacts/100%25/a%zz.iso');
    const res = await get(`${MGR}/VirtualMedia/Cd`);
    expect(res.statusCode).toBe(200);
    expect((res.json() as Json).Inserted).toBe(true);
  });

  test('manager-media-only hides the System VirtualMedia', async () => {
    const { get, send } = setup(['manager-media-only']);
    const sys = (await get(SYS)).json() as Json;
    expect(sys.VirtualMedia).toBeUndefined();
    expectRedfishError(await get(`${SYS}/VirtualMedia`), 404, /\.ResourceNotFound$/);
    expectRedfishError(await get(`${SYS}/VirtualMedia/Cd`), 404, /\.ResourceNotFound$/);
    expectRedfishError(await send('POST', `${SYS}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, { Image: ISO }), 404, /\.ResourceNotFound$/);
    expect((await get(`${MGR}/VirtualMedia/Cd`)).statusCode).toBe(200);
  });

  test('Chassis', async () => {
    const { get } = setup();
    expectCollection((await get('/redfish/v1/Chassis')).json() as Json, '/redfish/v1/Chassis', ['/redfish/v1/Chassis/Chassis']);
    const chassis = (await get('/redfish/v1/Chassis/Chassis')).json() as Json;
    expectResource(chassis, /^#Chassis\.v1_\d+_\d+\.Chassis$/, '/redfish/v1/Chassis/Chassis');
    expect(typeof chassis.ChassisType).toBe('string');
  });

  test('404 for unknown resources and system ids', async () => {
    const { get, send } = setup();
    expectRedfishError(await get('/redfish/v1/Nope'), 404, /\.ResourceNotFound$/);
    expectRedfishError(await get('/redfish/v1/Systems/other'), 404, /\.ResourceNotFound$/);
    expectRedfishError(await get('/redfish/v1/Systems/other/EthernetInterfaces'), 404, /\.ResourceNotFound$/);
    expectRedfishError(await get('/redfish/v1/Systems/other/VirtualMedia/Cd'), 404, /\.ResourceNotFound$/);
    expectRedfishError(await send('POST', '/redfish/v1/Systems/other/Actions/ComputerSystem.Reset', { ResetType: 'On' }), 404, /\.ResourceNotFound$/);
  });

  test('405 with Allow for a known resource and the wrong method', async () => {
    const { send } = setup();
    const res = await send('DELETE', SYS);
    expectRedfishError(res, 405, /\.OperationNotAllowed$/);
    expect(res.headers.allow).toContain('GET');
    expect(res.headers.allow).toContain('PATCH');
    expect(res.headers.allow).not.toContain('DELETE');
    const action = await send('PATCH', `${SYS}/Actions/ComputerSystem.Reset`, {});
    expectRedfishError(action, 405, /\.OperationNotAllowed$/);
    expect(action.headers.allow).toBe('POST');
  });
});

describe('ComputerSystem.Reset', () => {
  const reset = `${SYS}/Actions/ComputerSystem.Reset`;

  test('204, then the power state follows', async () => {
    const { send, get, machine, driver } = setup();
    const res = await send('POST', reset, { ResetType: 'On' });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    await machine.settled();
    expect(((await get(SYS)).json() as Json).PowerState).toBe('On');
    expect(driver.plans()).toHaveLength(1);
    expectRedfishError(await send('POST', reset, { ResetType: 'On' }), 409, /^Base\.[\d.]+\.\w+$/);
  });

  test('parameter errors', async () => {
    const { send, driver } = setup();
    expectRedfishError(await send('POST', reset, {}), 400, /\.ActionParameterMissing$/);
    expectRedfishError(await send('POST', reset), 400, /\.ActionParameterMissing$/);
    expectRedfishError(await send('POST', reset, { ResetType: 1 }), 400, /\.ActionParameterValueTypeError$/);
    const unknownValue = expectRedfishError(await send('POST', reset, { ResetType: 'Nmi' }), 400, /^Base\.[\d.]+\.ActionParameter\w+$/);
    expect(unknownValue.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/ResetType']);
    const unknownParam = expectRedfishError(await send('POST', reset, { ResetType: 'On', Force: true }), 400, /\.ActionParameterUnknown$/);
    expect(unknownParam.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Force']);
    expectRedfishError(await send('POST', reset, '{"ResetType": "On"'), 400, /\.MalformedJSON$/);
    expectRedfishError(await send('POST', reset, '["On"]'), 400, /\.MalformedJSON$/);
    expect(driver.calls).toEqual([]);
  });

  test('no-power-cycle: PowerCycle is not offered and is a 400', async () => {
    const { send, get } = setup(['no-power-cycle']);
    const sys = (await get(SYS)).json() as Json;
    expect(sys.Actions['#ComputerSystem.Reset']['ResetType@Redfish.AllowableValues']).not.toContain('PowerCycle');
    expectRedfishError(await send('POST', reset, { ResetType: 'PowerCycle' }), 400, /^Base\.[\d.]+\.ActionParameter\w+$/);
  });
});

describe('PATCH of Boot', () => {
  test('204 and visible in GET', async () => {
    const { send, get } = setup();
    const uri = 'http://10.0.2.2:8080/artifacts/abc/uki.efi';
    const res = await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once', HttpBootUri: uri } });
    expect(res.statusCode).toBe(204);
    expect(((await get(SYS)).json() as Json).Boot).toMatchObject({ BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once', HttpBootUri: uri });
  });

  test('Once is consumed by a boot and the resource shows it', async () => {
    const { send, get, machine, driver } = setup();
    await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Hdd', BootSourceOverrideEnabled: 'Once' } });
    await send('POST', `${SYS}/Actions/ComputerSystem.Reset`, { ResetType: 'On' });
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'hdd' }]);
    expect(((await get(SYS)).json() as Json).Boot).toMatchObject({ BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' });
  });

  test('unknown, read-only and badly typed properties, bad enum values', async () => {
    const { send, get } = setup();
    const before = ((await get(SYS)).json() as Json).Boot;
    const unknown = expectRedfishError(await send('PATCH', SYS, { Bios: {} }), 400, /\.PropertyUnknown$/);
    expect(unknown.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Bios']);
    expectRedfishError(await send('PATCH', SYS, { Boot: { BootNext: 'Boot0001' } }), 400, /\.PropertyUnknown$/);
    const readOnly = expectRedfishError(await send('PATCH', SYS, { PowerState: 'On' }), 400, /\.PropertyNotWritable$/);
    expect(readOnly.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/PowerState']);
    // Shown in the resource, so read-only rather than unknown.
    expectRedfishError(await send('PATCH', SYS, { MemorySummary: { TotalSystemMemoryGiB: 64 } }), 400, /\.PropertyNotWritable$/);
    expectRedfishError(await send('PATCH', SYS, { Boot: 'Cd' }), 400, /\.PropertyValueTypeError$/);
    expectRedfishError(await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 3 } }), 400, /\.PropertyValueTypeError$/);
    const badEnum = expectRedfishError(await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Floppy' } }), 400, /\.PropertyValueNotInList$/);
    expect(badEnum.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Boot/BootSourceOverrideTarget']);
    expectRedfishError(await send('PATCH', SYS, { Boot: { BootSourceOverrideMode: 'Legacy' } }), 400, /\.PropertyValueNotInList$/);
    expectRedfishError(await send('PATCH', SYS, '{"Boot": '), 400, /\.MalformedJSON$/);
    expect(((await get(SYS)).json() as Json).Boot).toEqual(before);
  });

  test('ETag on GET, If-None-Match → 304, stale If-Match → 412', async () => {
    const { send, get } = setup();
    const first = await get(SYS);
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^(W\/)?"[^"]+"$/);
    const again = await get(SYS, { 'if-none-match': etag });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers.etag).toBe(etag);

    expect((await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Hdd' } }, { 'if-match': etag })).statusCode).toBe(204);
    const changed = await get(SYS, { 'if-none-match': etag });
    expect(changed.statusCode).toBe(200);
    expect(changed.headers.etag).not.toBe(etag);
    expectRedfishError(await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Cd' } }, { 'if-match': etag }), 412, /\.PreconditionFailed$/);
    expect(((await get(SYS)).json() as Json).Boot.BootSourceOverrideTarget).toBe('Hdd');
    expect((await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Cd' } }, { 'if-match': '*' })).statusCode).toBe(204);
  });

  test('post-lock: 400 UnableToModifyDuringSystemPOST while in POST', async () => {
    const { send, machine } = setup(['post-lock']);
    await send('POST', `${SYS}/Actions/ComputerSystem.Reset`, { ResetType: 'On' });
    await machine.settled();
    const body = expectRedfishError(await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Hdd' } }), 400, /\.UnableToModifyDuringSystemPOST$/);
    expect(body.error.code).toMatch(/UnableToModifyDuringSystemPOST$/);
    expectRedfishError(await send('POST', `${MGR}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, { Image: ISO }), 400, /\.UnableToModifyDuringSystemPOST$/);
    await sleep(250);
    expect((await send('PATCH', SYS, { Boot: { BootSourceOverrideTarget: 'Hdd' } })).statusCode).toBe(204);
  });
});

describe('VirtualMedia actions', () => {
  const insert = `${MGR}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`;
  const eject = `${MGR}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia`;

  test('InsertMedia 204, a second insert 409, EjectMedia 204', async () => {
    const { send, get, probe } = setup();
    expect((await send('POST', insert, { Image: ISO, Inserted: true, WriteProtected: true, TransferMethod: 'Stream' })).statusCode).toBe(204);
    expect(probe.probed).toEqual([ISO]);
    expect(((await get(`${SYS}/VirtualMedia/Cd`)).json() as Json).Image).toBe(ISO);
    expectRedfishError(await send('POST', insert, { Image: 'http://10.0.2.2:8080/other.iso' }), 409, /^Base\.[\d.]+\.\w+$/);
    expect((await send('POST', eject, {})).statusCode).toBe(204);
    expect(((await get(`${MGR}/VirtualMedia/Cd`)).json() as Json)).toMatchObject({ Image: null, Inserted: false, ConnectedVia: 'NotConnected' });
    expect((await send('POST', `${SYS}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, { Image: ISO })).statusCode).toBe(204);
  });

  test('parameter errors and an unreachable image', async () => {
    const { send, get, probe } = setup();
    expectRedfishError(await send('POST', insert, {}), 400, /\.ActionParameterMissing$/);
    expectRedfishError(await send('POST', insert, { Image: ISO, Foo: 1 }), 400, /\.ActionParameterUnknown$/);
    expectRedfishError(await send('POST', insert, { Image: 7 }), 400, /\.ActionParameterValueTypeError$/);
    expectRedfishError(await send('POST', insert, { Image: ISO, Inserted: 'yes' }), 400, /\.ActionParameterValueTypeError$/);
    expectRedfishError(await send('POST', insert, { Image: 'ftp://10.0.2.2/boot.iso' }), 400, /\.ActionParameterValueError$/);
    expectRedfishError(await send('POST', eject, { Image: ISO }), 400, /\.ActionParameterUnknown$/);
    probe.unreachable.add(ISO);
    const unreachable = expectRedfishError(await send('POST', insert, { Image: ISO }), 400, /^Base\.[\d.]+\.ActionParameter\w+$/);
    expect(unreachable.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Image']);
    expect(((await get(`${MGR}/VirtualMedia/Cd`)).json() as Json).Inserted).toBe(false);
  });

  test('iso-only refuses an .efi image with a 400 naming Image', async () => {
    const { send } = setup(['iso-only']);
    const res = expectRedfishError(await send('POST', insert, { Image: 'http://10.0.2.2:8080/uki.efi' }), 400, /\.ActionParameterValueError$/);
    expect(res.error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/Image']);
    expect((await send('POST', insert, { Image: ISO })).statusCode).toBe(204);
  });

  test('PATCH of the media inserts and ejects', async () => {
    const { send, get } = setup();
    expect((await send('PATCH', `${MGR}/VirtualMedia/Cd`, { Image: ISO, Inserted: true })).statusCode).toBe(204);
    expect(((await get(`${MGR}/VirtualMedia/Cd`)).json() as Json).Inserted).toBe(true);
    expect((await send('PATCH', `${MGR}/VirtualMedia/Cd`, { Image: null })).statusCode).toBe(204);
    expect(((await get(`${MGR}/VirtualMedia/Cd`)).json() as Json).Inserted).toBe(false);
    expectRedfishError(await send('PATCH', `${MGR}/VirtualMedia/Cd`, { Foo: 1 }), 400, /\.PropertyUnknown$/);
  });
});
