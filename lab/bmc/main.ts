#!/usr/bin/env node
// The virtual BMC: one Redfish endpoint (HTTPS, basic auth) in front of one QEMU server.
//   node dist/lab/bmc/main.js <config.json>
// Generates a self-signed certificate at start-up, creates the NVRAM and empty disks the first time,
// and powers the server off (kills QEMU) when it stops.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, ftruncateSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { loadBmcConfig } from './config.js';
import { Machine } from './machine/machine.js';
import { SecureBootSetup } from './machine/secure-boot.js';
import { httpMediaProbe } from './media-probe.js';
import { setUpProfile } from './redfish/profile-setup.js';
import { createDriver } from './driver-factory.js';
import { buildRedfishApp } from './redfish/app.js';
import { RedfishError } from './redfish/errors.js';

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: bmc <config.json>');
  const cfg = loadBmcConfig(file);
  const hwc = cfg.hardware;
  mkdirSync(cfg.stateDir, { recursive: true });
  const [host] = cfg.listen.split(':') as [string, string];
  const port = Number(cfg.listen.split(':')[1]);

  // Like a BMC's factory certificate: self-signed, for its own address.
  const key = join(cfg.stateDir, 'bmc-key.pem');
  const cert = join(cfg.stateDir, 'bmc-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
    '-subj', `/CN=${host}`, '-addext', `subjectAltName=IP:${host}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });

  // The server's own firmware settings and disks survive power cycles (and BMC restarts).
  const nvram = join(cfg.stateDir, 'nvram.fd');
  if (!existsSync(nvram)) copyFileSync(hwc.firmwareVarsTemplate, nvram);
  for (const disk of hwc.disks) {
    if (existsSync(disk.path)) continue;
    const fd = openSync(disk.path, 'wx');
    ftruncateSync(fd, disk.sizeGiB * 1024 ** 3);
    closeSync(fd);
  }

  let app: ReturnType<typeof buildRedfishApp> | undefined;
  const log = (event: string, fields: Record<string, unknown> = {}) => app?.log.info({ server: hwc.name, ...fields }, event);
  const driver = createDriver(cfg, nvram, log);
  const setup = setUpProfile(cfg.profile, cfg.quirks);
  const { profile, recording } = setup;
  if (setup.systemId && setup.systemId !== cfg.systemId) throw new Error(`${file}: systemId: the ${profile.name} recording's System is "${setup.systemId}", not "${cfg.systemId}"`);
  const sb = hwc.secureBoot;
  const secureBoot = sb
    ? new SecureBootSetup({ pk: readFileSync(sb.platformCert, 'utf8'), kek: [readFileSync(sb.platformCert, 'utf8')] }, sb.dbCerts.map((f) => readFileSync(f, 'utf8')), sb.enabled)
    : undefined;
  const machine = new Machine(driver, httpMediaProbe(), new Set(profile.quirks), { log }, cfg.timings, { ...setup.capabilities(), ...(secureBoot ? { secureBoot } : {}) });
  app = buildRedfishApp({
    ...(recording ? { recorded: { recording, profile } } : {}),
    inventory: { systemId: cfg.systemId, name: hwc.name, uuid: hwc.uuid, serialNumber: hwc.serialNumber, memoryMiB: hwc.memoryMiB, cpus: hwc.cpus, nics: hwc.nics, disks: hwc.disks },
    machine,
    username: cfg.username,
    password: cfg.password,
    bmcUuid: randomUUID(),
    https: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') },
    logLevel: cfg.logLevel,
  });
  // The lab's side of the server, not a BMC function: its cables (lab/links.ts). Same credentials.
  app.post('/lab/v1/links/:nic', async (req, reply) => {
    const nic = Number((req.params as { nic: string }).nic);
    const up = (req.body as { up?: unknown } | undefined)?.up;
    if (!Number.isInteger(nic) || nic < 0 || nic >= hwc.nics.length) throw new RedfishError(404, 'Base.1.15.ResourceNotFound', `no NIC ${(req.params as { nic: string }).nic}`);
    if (typeof up !== 'boolean') throw new RedfishError(400, 'Base.1.15.PropertyValueTypeError', 'up must be true or false', ['#/up']);
    try {
      await driver.setLink(nic, up);
    } catch (err) {
      throw new RedfishError(409, 'Base.1.15.ResourceInUse', (err as Error).message);
    }
    log(up ? 'cable plugged' : 'cable pulled', { nic });
    return reply.code(204).send();
  });
  await app.listen({ host, port });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app?.log.info({ signal }, 'stopping: powering the server off');
    await driver.powerOff();
    await app?.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(`bmc: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
