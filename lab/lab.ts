// A lab: a private network in a namespace with N virtual servers behind Redfish BMCs, a plain DHCP
// server and the build service, described in one JSON file that tests, inventories and people read.
// labUp() builds it, labDown() removes every trace of it (processes, namespace, state directory).
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { BmcConfig } from './bmc/config.js';
import type { Quirk } from './bmc/machine/quirks.js';
import { setUpProfile } from './bmc/redfish/profile-setup.js';
import { ansibleInventory } from './inventory.js';
import { FIRMWARE_CODE, IMAGES_PORT, preflight, SECURE_BOOT_CODE, SERVICE_PORT, SERVICE_TLS_PORT, serverPlan, SUBNET, TAGGED_SUBNET, TARGET_IMAGE, TARGET_IMAGE_CERT, type LabOptions } from './plan.js';
import { makeServiceCertificates, nginxConfig } from './processes.js';
import { createNetwork, DATA_BRIDGE, destroyNamespace, namespaceExists, PROVISIONING_BRIDGE, spawnInNamespace } from './netns.js';
import { waitForHttp } from './ns-http.js';
import { createServerNetwork, raiseInotifyLimit, removeSimulated, simulatedNicName, unpackBaseRoot } from './simulated.js';

export { defaultLabOptions, SUBNET, TAGGED_SUBNET, TARGET_IMAGE, type LabOptions } from './plan.js';

const run = promisify(execFile);

/** A server's disk, as its BMC's configuration describes it (one shape: the zod schema's). */
export type LabDisk = BmcConfig['hardware']['disks'][number];

export interface LabServer {
  name: string;
  /** qemu: a virtual machine; simulated: the ephemeral OS's userland in a container (lab/README.md) */
  kind: 'qemu' | 'simulated';
  uuid: string;
  serialNumber: string;
  bmc: { url: string; host: string; username: string; password: string; systemId: string; profile: string; quirks: Quirk[] };
  macs: string[];
  /** the NIC on the provisioning network (DHCP) is macs[0]; macs[1] is on the data bridge or beside it */
  provisioningMac: string;
  /** the BMC's state directory (NVRAM, QMP sockets, disks) */
  stateDir: string;
  /** path: the raw image file behind the disk (the BMC creates it empty; it survives power cycles) */
  disks: LabDisk[];
  console: string;
  bmcLog: string;
}

export interface LabDescription {
  namespace: string;
  stateDir: string;
  /** the build service as the servers (and the orchestrator inside the namespace) reach it */
  serviceUrl: string;
  serviceTlsUrl: string;
  /** CA certificate that signed the service's TLS certificate (for checkin-ca.pem) */
  serviceCaCert: string;
  /** With Secure Boot servers: the certificate the service signs with (to enroll in their db). */
  serviceSecureBootCert?: string;
  serviceLog: string;
  /** the source address the orchestrator's calls come from: the service trusts it */
  orchestratorAddress: string;
  network: {
    namespace: string; bridge: string; dataBridge: string; cidr: string; gateway: string; dns: string[]; dhcpRange: [string, string];
    /** the bridge each server's second NIC is on */
    secondNicBridge: string;
    /** the tagged network on the provisioning bridge, when the lab has one */
    vlan: { id: number; interface: string; cidr: string; gateway: string } | null;
  };
  dhcpLog: string;
  /** a web server with the base-artifacts/out files (the target OS image among them) */
  imagesUrl: string;
  targetImageUrl: string;
  /** the orchestrator's SSH key pair (private key; .pub beside it) */
  sshKey: string;
  /** an Ansible inventory of the lab's servers for orchestrator/ */
  inventory: string;
  servers: LabServer[];
}

export function descriptionPath(stateDir: string): string {
  return join(stateDir, 'lab.json');
}

export function readDescription(stateDir: string): LabDescription | undefined {
  const file = descriptionPath(stateDir);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as LabDescription) : undefined;
}

/** Builds and starts a lab; if one already runs under this namespace, returns its description. */
export async function labUp(opts: LabOptions): Promise<{ description: LabDescription; created: boolean }> {
  const existing = readDescription(opts.stateDir);
  if (existing && (await namespaceExists(opts.namespace))) return { description: existing, created: false };
  preflight(opts);
  if (await namespaceExists(opts.namespace)) throw new Error(`namespace ${opts.namespace} exists but has no lab description in ${opts.stateDir}: run "make lab-down" first`);
  if (existsSync(opts.stateDir) && readdirSync(opts.stateDir).length > 0) {
    throw new Error(`state directory ${opts.stateDir} is not empty and holds no running lab: remove it or choose another`);
  }
  mkdirSync(opts.stateDir, { recursive: true });
  const ns = opts.namespace;
  const plans = Array.from({ length: opts.servers }, (_, i) => serverPlan(opts, i));
  const secondNicBridge = opts.secondNic === 'provisioning' ? PROVISIONING_BRIDGE : DATA_BRIDGE;
  try {
    const vlanTaps = await createNetwork({
      namespace: ns,
      provisioningAddress: `${SUBNET.gateway}/${SUBNET.prefix}`,
      bmcAddresses: plans.map((p) => `${p.bmcAddress}/32`),
      taps: plans.filter((p) => p.kind === 'qemu').flatMap((p) => [[p.taps[0], PROVISIONING_BRIDGE], [p.taps[1], secondNicBridge]] as [string, string][]),
      vlan: opts.vlan ? { id: opts.vlan, address: `${TAGGED_SUBNET.gateway}/${TAGGED_SUBNET.prefix}` } : undefined,
    });
    if (vlanTaps) {
      spawnInNamespace(ns, 'python3', [join(opts.repo, 'lab/vlan-relay.py'), String(opts.vlan), vlanTaps.trunk, vlanTaps.access], join(opts.stateDir, 'vlan-relay.log'));
    }

    // Plain DHCP: addresses, router, DNS. No boot file, next-server, PXE or HTTP-boot options.
    const dhcpLog = join(opts.stateDir, 'dnsmasq.log');
    spawnInNamespace(ns, 'dnsmasq', [
      '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--user=root',
      `--interface=${PROVISIONING_BRIDGE}`, '--bind-interfaces', '--except-interface=lo',
      `--dhcp-range=${SUBNET.dhcpFirst},${SUBNET.dhcpLast},255.255.255.0,1h`,
      `--dhcp-option=option:router,${SUBNET.gateway}`, `--dhcp-option=option:dns-server,${SUBNET.gateway}`,
      `--dhcp-leasefile=${join(opts.stateDir, 'dnsmasq.leases')}`, '--log-dhcp', `--log-facility=${dhcpLog}`,
      // Static servers: a lease for their firmware's HTTP boot (vendor class HTTPClient) and nothing
      // for their OSes, so an OS that asks for DHCP shows up as "ignored" in the log.
      ...(opts.staticServers.length ? ['--dhcp-vendorclass=set:firmware,HTTPClient', '--dhcp-ignore=tag:static,tag:!firmware'] : []),
      ...plans.filter((p) => opts.staticServers.includes(p.name)).flatMap((p) => p.macs.map((mac) => `--dhcp-host=${mac},set:static`)),
    ], join(opts.stateDir, 'dnsmasq.out'));

    const certs = await makeServiceCertificates(opts.stateDir, SUBNET.gateway);
    const imagesUrl = `http://${SUBNET.gateway}:${IMAGES_PORT}`;
    const nginxConf = join(opts.stateDir, 'nginx.conf');
    writeFileSync(nginxConf, nginxConfig(opts.stateDir, join(opts.repo, 'base-artifacts/out'), `${SUBNET.gateway}:${IMAGES_PORT}`));
    spawnInNamespace(ns, 'nginx', ['-c', nginxConf, '-e', join(opts.stateDir, 'nginx-error.log')], join(opts.stateDir, 'nginx.out'));
    const sshKey = join(opts.stateDir, 'orchestrator_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `orchestrator@${ns}`, '-f', sshKey]);
    // The lab's platform key (PK, KEK) and its own db key, made once for the servers that enforce.
    let sbKeys: Promise<Record<'platform' | 'labDb' | 'service', { key: string; cert: string }>> | undefined;
    const labSecureBootKeys = () => (sbKeys ??= (async () => {
      const dir = join(opts.stateDir, 'secure-boot');
      mkdirSync(dir, { recursive: true });
      const pair = async (name: string, cn: string) => {
        const key = join(dir, `${name}.key`), cert = join(dir, `${name}.pem`);
        await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '3650', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert]);
        return { key, cert };
      };
      return {
        platform: await pair('platform', `uki-on-demand lab ${ns} platform key`),
        labDb: await pair('lab-db', `uki-on-demand lab ${ns} db key`),
        // The service's signing key: not in any db until the orchestrator enrolls its certificate.
        service: await pair('service', `uki-on-demand lab ${ns} service signing key`),
      };
    })());
    const serviceSigning = opts.secureBootServers.length ? (await labSecureBootKeys()).service : undefined;
    const serviceUrl = `http://${SUBNET.gateway}:${SERVICE_PORT}`;
    const serviceTlsUrl = `https://${SUBNET.gateway}:${SERVICE_TLS_PORT}`;
    const serviceLog = join(opts.stateDir, 'service.log');
    spawnInNamespace(ns, process.execPath, [
      join(opts.repo, 'dist/cli.js'), 'serve',
      '--listen', `${SUBNET.gateway}:${SERVICE_PORT}`, '--tls-listen', `${SUBNET.gateway}:${SERVICE_TLS_PORT}`,
      '--tls-cert', certs.cert, '--tls-key', certs.key,
      '--public-url', serviceUrl, '--public-tls-url', serviceTlsUrl,
      // Only the orchestrator's side is trusted; the servers' DHCP range may fetch artifacts and PUT checkins.
      '--trusted-cidrs', `${SUBNET.gateway}/32,127.0.0.0/8`,
      '--data-dir', join(opts.stateDir, 'service-data'), '--base-artifacts', join(opts.repo, 'base-artifacts/out'),
      '--log-level', opts.serviceLogLevel,
      ...(serviceSigning ? ['--secure-boot-key', serviceSigning.key, '--secure-boot-cert', serviceSigning.cert] : []),
    ], serviceLog);

    // Simulated servers: one unpacked base root for all, and each one's namespace with its NICs.
    const baseRoot = plans.some((p) => p.kind === 'simulated') ? await unpackBaseRoot(opts.stateDir, join(opts.repo, 'base-artifacts/out/initramfs-amd64.img')) : undefined;
    const serverNetns: Record<string, string> = {};
    if (baseRoot) raiseInotifyLimit(opts.stateDir, opts.simulated);
    for (const p of plans.filter((x) => x.kind === 'simulated')) {
      const bridges = [PROVISIONING_BRIDGE, secondNicBridge];
      serverNetns[p.name] = await createServerNetwork(ns, p.name, p.macs.map((mac, i) => ({ mac, tap: p.taps[i]!, bridge: bridges[i]!, ifname: simulatedNicName(i) })));
    }

    const targetCertPath = join(opts.repo, 'base-artifacts/out', TARGET_IMAGE_CERT);
    const targetImageCert = existsSync(targetCertPath) ? [targetCertPath] : [];
    const servers: LabServer[] = [];
    for (const p of plans) {
      mkdirSync(p.dir, { recursive: true });
      const password = randomBytes(9).toString('base64url');
      const { profile, systemId } = setUpProfile(opts.profiles[p.name] ?? 'standard');
      const secureBoot = opts.secureBootServers.includes(p.name) ? await labSecureBootKeys() : undefined;
      const cfg: BmcConfig = {
        listen: `${p.bmcAddress}:443`,
        username: 'admin',
        password,
        // A profiled BMC's System has the recording's id.
        systemId: systemId ?? 'System.Embedded.1',
        stateDir: p.dir,
        profile: opts.profiles[p.name] ?? 'standard',
        quirks: opts.quirks[p.name] ?? [],
        timings: opts.bmcTimings ?? {},
        logLevel: 'info',
        hardware: {
          driver: p.kind === 'simulated' ? 'nspawn' : 'qemu',
          ...(p.kind === 'simulated' ? { simulated: { netns: serverNetns[p.name]!, linkMbps: opts.simulatedLinkMbps, base: baseRoot! } } : {}),
          name: p.name,
          uuid: randomUUID(),
          serialNumber: p.serialNumber,
          memoryMiB: opts.memoryMiB,
          cpus: opts.cpus,
          accel: opts.accel,
          firmwareCode: secureBoot ? SECURE_BOOT_CODE : FIRMWARE_CODE,
          // db: the lab's own key, and the installed OS's vendor key when the target image is signed.
          ...(secureBoot ? { secureBoot: { platformCert: secureBoot.platform.cert, dbCerts: [secureBoot.labDb.cert, ...targetImageCert], enabled: true } } : {}),
          tpm: opts.tpmServers.includes(p.name),
          firmwareVarsTemplate: '/usr/share/OVMF/OVMF_VARS_4M.fd',
          console: join(p.dir, 'console.log'),
          nics: p.macs.map((mac, i) => ({ mac, tap: p.taps[i]!, pciSlot: 3 + i })),
          disks: p.disks,
        },
      };
      const cfgFile = join(p.dir, 'bmc.json');
      writeFileSync(cfgFile, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
      const bmcLog = join(p.dir, 'bmc.log');
      spawnInNamespace(ns, process.execPath, [join(opts.repo, 'dist/lab/bmc/main.js'), cfgFile], bmcLog);
      servers.push({
        name: p.name,
        kind: p.kind,
        uuid: cfg.hardware.uuid,
        serialNumber: p.serialNumber,
        bmc: { url: `https://${p.bmcAddress}`, host: p.bmcAddress, username: cfg.username, password, systemId: cfg.systemId, profile: cfg.profile, quirks: [...new Set([...profile.quirks, ...cfg.quirks])] },
        macs: p.macs,
        provisioningMac: p.macs[0]!,
        stateDir: p.dir,
        disks: p.disks.map(({ kind, serial, wwn, sizeGiB, path }) => (wwn ? { kind, serial, wwn, sizeGiB, path } : { kind, serial, sizeGiB, path })),
        console: cfg.hardware.console,
        bmcLog,
      });
    }

    await waitForHttp(ns, `${serviceUrl}/healthz`, 'the build service', 30_000);
    await waitForHttp(ns, `${imagesUrl}/`, 'the image web server', 30_000);
    for (const s of servers) await waitForHttp(ns, `${s.bmc.url}/redfish/v1`, `the BMC of ${s.name}`, 30_000);

    const description: LabDescription = {
      namespace: ns,
      stateDir: resolve(opts.stateDir),
      serviceUrl,
      serviceTlsUrl,
      serviceCaCert: certs.ca,
      ...(serviceSigning ? { serviceSecureBootCert: serviceSigning.cert } : {}),
      serviceLog,
      orchestratorAddress: SUBNET.gateway,
      network: {
        namespace: ns, bridge: PROVISIONING_BRIDGE, dataBridge: DATA_BRIDGE, cidr: SUBNET.cidr, gateway: SUBNET.gateway, dns: [SUBNET.gateway], dhcpRange: [SUBNET.dhcpFirst, SUBNET.dhcpLast],
        secondNicBridge,
        vlan: vlanTaps ? { id: opts.vlan, interface: vlanTaps.access, cidr: TAGGED_SUBNET.cidr, gateway: TAGGED_SUBNET.gateway } : null,
      },
      dhcpLog,
      imagesUrl,
      targetImageUrl: `${imagesUrl}/${TARGET_IMAGE}`,
      sshKey,
      inventory: join(opts.stateDir, 'inventory.yml'),
      servers,
    };
    writeFileSync(description.inventory, ansibleInventory(description, opts.staticServers), { mode: 0o600 });
    writeFileSync(descriptionPath(opts.stateDir), JSON.stringify(description, null, 2) + '\n', { mode: 0o600 });
    return { description, created: true };
  } catch (err) {
    await labDown(opts.namespace, opts.stateDir);
    throw err;
  }
}

/** Stops everything the lab started (every process in its namespace), deletes the namespace and the state. */
export async function labDown(namespace: string, stateDir: string): Promise<void> {
  await destroyNamespace(namespace);
  await removeSimulated(namespace, stateDir);
  rmSync(stateDir, { recursive: true, force: true });
}

