// Redfish Secure Boot on the lab's BMC, through app.inject over the machine model and a fake driver:
// the switch and db enrollment in the shape Dell iDRAC9 records, on the standard and the Dell profile,
// the switch alone on HPE's; changes reach the next boot's plan (the NVRAM the driver writes).
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import { SecureBootSetup } from '../../lab/bmc/machine/secure-boot.js';
import { buildRedfishApp } from '../../lab/bmc/redfish/app.js';
import { setUpProfile } from '../../lab/bmc/redfish/profile-setup.js';
import { secureBootKeyPair } from '../support/secure-boot.js';
import { tempDir } from '../support/service.js';
import { makeMachine } from './bmc-fakes.js';

const AUTH = { authorization: `Basic ${Buffer.from('admin:s3cret').toString('base64')}` };
const dir = tempDir('bmc-sb');
const platform = readFileSync(secureBootKeyPair(dir, 'platform').cert, 'utf8');
const lab = readFileSync(secureBootKeyPair(dir, 'lab-db').cert, 'utf8');
const service = readFileSync(secureBootKeyPair(dir, 'service').cert, 'utf8');

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

function setup(profile: string) {
  const s = setUpProfile(profile);
  const secureBoot = new SecureBootSetup({ pk: platform, kek: [platform] }, [lab], true);
  const m = makeMachine(s.profile.quirks, { powerOnDelayMs: 5, powerCycleOffMs: 5, postMs: 10 }, { ...s.capabilities(), secureBoot });
  const app = buildRedfishApp({
    inventory: { systemId: s.systemId ?? 'srv1', name: 'server-1', uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01', serialNumber: 'LAB0001', memoryMiB: 2048, cpus: 2, nics: [{ mac: '52:54:00:00:01:01' }], disks: [] },
    machine: m.machine, username: 'admin', password: 's3cret', bmcUuid: '7d2f4e8a-1111-4222-8333-944455556666', logLevel: 'silent',
    ...(s.recording ? { recorded: { recording: s.recording, profile: s.profile } } : {}),
  });
  apps.push(app);
  const get = (url: string) => app.inject({ method: 'GET', url, headers: AUTH });
  const send = (method: 'POST' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
    app.inject({ method, url, headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });
  return { ...m, get, send, system: `/redfish/v1/Systems/${s.systemId ?? 'srv1'}` };
}

describe.each(['standard', 'dell'])('%s: the switch and db enrollment', (profile) => {
  test('enroll, refuse a duplicate and a non-certificate naming CertificateString, switch, and the next boot gets it all', async () => {
    const b = setup(profile);
    const sys = (await b.get(b.system)).json();
    const sbPath = sys.SecureBoot['@odata.id'];
    expect((await b.get(sbPath)).json()).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: 'Disabled' });
    const certs = `${sbPath}/SecureBootDatabases/db/Certificates`;
    expect((await b.get(certs)).json()['Members@odata.count']).toBe(1);

    const created = await b.send('POST', certs, { CertificateString: service, CertificateType: 'PEM' });
    expect(created.statusCode).toBe(201);
    const location = created.headers.location as string;
    expect((await b.get(location)).json()).toMatchObject({ CertificateType: 'PEM', Subject: { CommonName: 'uki-on-demand test service' } });
    const again = await b.send('POST', certs, { CertificateString: service, CertificateType: 'PEM' });
    expect(again.statusCode).toBe(409);
    const junk = await b.send('POST', certs, { CertificateString: 'not a certificate', CertificateType: 'PEM' });
    expect(junk.statusCode).toBe(400);
    expect(junk.json().error['@Message.ExtendedInfo'][0].RelatedProperties).toEqual(['#/CertificateString']);
    expect((await b.send('PATCH', sbPath, { SecureBootEnable: 'yes' })).statusCode).toBe(400);

    b.machine.reset('On');
    await b.machine.settled();
    expect(b.machine.lastBoot?.secureBoot).toMatchObject({ enabled: true, pk: platform, db: [lab, expect.stringContaining('BEGIN CERTIFICATE')] });
    expect((await b.get(sbPath)).json()).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: 'Enabled' });

    // Switched off: taken at the next boot, not the running one.
    expect((await b.send('PATCH', sbPath, { SecureBootEnable: false })).statusCode).toBe(204);
    expect((await b.get(sbPath)).json()).toMatchObject({ SecureBootEnable: false, SecureBootCurrentBoot: 'Enabled' });
    expect((await b.send('DELETE', location)).statusCode).toBe(204);
    b.machine.reset('ForceRestart');
    await b.machine.settled();
    expect(b.machine.lastBoot?.secureBoot).toMatchObject({ enabled: false, db: [lab] });
  });
});

test('HPE: the switch, and no SecureBootDatabases (the recording has none)', async () => {
  const b = setup('hpe');
  const sb = (await b.get(`${b.system}/SecureBoot`)).json();
  expect(sb).toMatchObject({ SecureBootEnable: true, SecureBootMode: 'UserMode' });
  expect(sb.SecureBootDatabases).toBeUndefined();
  expect((await b.get(`${b.system}/SecureBoot/SecureBootDatabases/db/Certificates`)).statusCode).toBe(404);
});
