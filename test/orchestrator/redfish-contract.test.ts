// The collection's Redfish modules against the lab's BMC with quirks on, without a boot: the BMC's
// Redfish adapter and machine model over a fake driver, served over HTTPS on loopback, and each module
// run by `ansible localhost -m`. Each test fails when the orchestrator's handling of its behaviour is
// taken out; what the BMC answered is read from its own response log.
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, test } from 'vitest';
import type { Quirk } from '../../lab/bmc/machine/quirks.js';
import { buildRedfishApp } from '../../lab/bmc/redfish/app.js';
import type { Inventory } from '../../lab/bmc/redfish/resources.js';
import { makeMachine } from '../lab/bmc-fakes.js';
import { requireAnsible } from '../support/ansible.js';
import { certificate, expectRefusedThenTaken, module, PASS, until, USER } from '../support/redfish-modules.js';

requireAnsible();
const INVENTORY: Inventory = {
  systemId: 'srv1', name: 'server-1', uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01', serialNumber: 'LAB0001', memoryMiB: 2048, cpus: 2,
  nics: [{ mac: '52:54:00:00:01:01' }], disks: [{ kind: 'nvme', serial: 'NVME1SER', sizeGiB: 4 }],
};
const ISO_A = 'http://192.0.2.1:8080/artifacts/a/boot.iso';
const ISO_B = 'http://192.0.2.1:8080/artifacts/b/boot.iso';

let apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.map((a) => a.close()));
  apps = [];
});

/** A BMC with these quirks on 127.0.0.1 over HTTPS, and the log of what it answered. */
async function bmc(quirks: Quirk[], postMs = 200, insertTaskMs = 2_500) {
  const m = makeMachine(quirks, { powerOnDelayMs: 20, powerCycleOffMs: 20, ejectLagMs: 2_000, postMs, onRefusedMs: 3_000, resetGapMs: 3_000 });
  const app = buildRedfishApp({ inventory: INVENTORY, machine: m.machine, username: USER, password: PASS, bmcUuid: '7d2f4e8a-1111-4222-8333-944455556666', logLevel: 'silent', https: await certificate(), insertTaskMs });
  const answers: { method: string; url: string; status: number }[] = [];
  app.addHook('onResponse', async (req, reply) => {
    answers.push({ method: req.method, url: req.url, status: reply.statusCode });
  });
  apps.push(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  return { ...m, answers, host: `127.0.0.1:${port}` };
}

describe('the Redfish modules against BMC behaviours (no boot)', { timeout: 120_000 }, () => {
  test('a wrong password fails the first read with the status, and nothing but the public root answers', async () => {
    const b = await bmc([]);
    const r = await module('redfish_info', b.host, {}, 'wrong');
    expect(r.failed).toBe(true);
    expect(r.msg).toMatch(/^Read the system: HTTP 401 Base\.1\.15\.NoValidSession/);
    expect(r.status).toBe(401);
    expect(b.answers.filter((a) => a.status !== 401).map((a) => a.url)).toEqual(['/redfish/v1/']);
  });

  test('post-lock: an eject inside the POST window is refused with 400 and taken on a retry', async () => {
    const b = await bmc(['post-lock'], 4_000);
    await b.machine.insertMedia(ISO_A, true, true);
    b.machine.reset('On');
    await until(() => b.machine.inPost);
    const r = await module('redfish_media', b.host, { state: 'ejected' });
    expect(r.failed, r.msg).toBeFalsy();
    expectRefusedThenTaken(b.answers, 'VirtualMedia.EjectMedia', 400);
    expect(b.log.filter((l) => l.event === 'media ejected')).toHaveLength(1);
  });

  test('eject-lag and manager-media-only: the slot under the Manager, the new ISO inserted once the old one reads gone', async () => {
    const b = await bmc(['eject-lag', 'manager-media-only']);
    await b.machine.insertMedia(ISO_A, true, true);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO_B });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.slot).toBe('/redfish/v1/Managers/BMC/VirtualMedia/Cd');
    // It waited for the slot to read empty instead of inserting into an occupied slot.
    const inserts = b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia'));
    expect(inserts.map((a) => a.status)).toEqual([204]);
    expect(b.log.filter((l) => l.event === 'media inserted').map((l) => l.fields?.image)).toEqual([ISO_A, ISO_B]);
  });

  test('a power cycle is PowerCycle where the BMC offers it, ForceOff and On where it does not (also when it says so only in ActionInfo)', async () => {
    const cases = [
      [[], 'PowerCycle', ['PowerCycle']],
      [['no-power-cycle'], 'ForceOff+On', ['ForceOff', 'On']],
      // The reset types only in the action's ActionInfo: read from there, not assumed all allowed.
      [['no-power-cycle', 'reset-types-in-actioninfo'], 'ForceOff+On', ['ForceOff', 'On']],
    ] as const;
    for (const [quirks, how, resets] of cases) {
      const b = await bmc([...quirks]);
      b.machine.reset('On');
      await until(() => b.machine.powerState === 'On');
      const r = await module('redfish_power', b.host, { state: 'cycle', power_timeout: 30 });
      expect(r.failed, r.msg).toBeFalsy();
      expect(r.how).toBe(how);
      expect(r.power_state).toBe('On');
      expect(b.log.filter((l) => l.event === 'reset').map((l) => l.fields?.type).slice(1)).toEqual(resets);
    }
  });

  test('on-refused-after-off: On refused with 409 just after the power went off is sent again until taken', async () => {
    const b = await bmc(['on-refused-after-off']);
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    b.machine.reset('ForceOff');
    await until(() => b.machine.powerState === 'Off');
    const r = await module('redfish_power', b.host, { state: 'on', power_timeout: 30 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.power_state).toBe('On');
    expectRefusedThenTaken(b.answers, 'ComputerSystem.Reset', 409);
  });

  test('reset-too-soon: a reset refused with 400 InvalidOperationForSystemState is sent again until taken', async () => {
    const b = await bmc(['reset-too-soon']);
    b.machine.reset('On');
    await until(() => b.machine.powerState === 'On');
    const r = await module('redfish_power', b.host, { state: 'off', graceful_timeout: 0, power_timeout: 30 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.power_state).toBe('Off');
    expectRefusedThenTaken(b.answers, 'ComputerSystem.Reset', 400);
  });

  test('transfer-protocol-required: InsertMedia refused without TransferProtocolType is sent again with it', async () => {
    const b = await bmc(['transfer-protocol-required']);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO_B });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia')).map((a) => a.status)).toEqual([400, 204]);
    expect(b.machine.mediaSlot).toMatchObject({ image: ISO_B, inserted: true });
  });

  test('insert-task: InsertMedia answered 202 with a task; the module returns once the slot reads the image inserted', async () => {
    const b = await bmc(['insert-task']);
    const r = await module('redfish_media', b.host, { state: 'inserted', image: ISO_B });
    expect(r.failed, r.msg).toBeFalsy();
    // Read the moment the module ended: the image is attached, not still pending in the task.
    expect(b.machine.mediaSlot).toMatchObject({ image: ISO_B, inserted: true });
    expect(b.answers.filter((a) => a.url.endsWith('VirtualMedia.InsertMedia')).map((a) => a.status)).toEqual([202]);
  });

  test('transient-500: a change answered 500 SYS518 (iDRAC reloading) is sent again and taken', async () => {
    const b = await bmc(['transient-500']);
    const r = await module('redfish_boot', b.host, { target: 'Cd', enabled: 'Once' });
    expect(r.failed, r.msg).toBeFalsy();
    expect(b.answers.filter((a) => a.method === 'PATCH').map((a) => a.status)).toEqual([500, 204]);
    expect(b.machine.bootOverride).toMatchObject({ target: 'Cd', enabled: 'Once' });
  });

  test('no-override-disable: giving the BMC back clears the override with target None and Once when Disabled is refused', async () => {
    const b = await bmc(['no-override-disable']);
    b.machine.setBoot({ target: 'Cd', enabled: 'Once' });
    const r = await module('redfish_release', b.host, { graceful_timeout: 0 });
    expect(r.failed, r.msg).toBeFalsy();
    expect(r.problems).toEqual([]);
    const patches = b.answers.filter((a) => a.method === 'PATCH').map((a) => a.status);
    expect(patches).toEqual([500, 204]);
    expect(b.machine.bootOverride).toMatchObject({ target: 'None', enabled: 'Disabled' });
  });
});

