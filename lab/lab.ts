// A lab: a private network in a namespace with N virtual servers behind Redfish BMCs, a plain DHCP
// server and the build service, described in one JSON file that tests, inventories and people read.
// labUp() builds it, labDown() removes every trace of it (processes, namespace, state directory).
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { BmcConfig } from './bmc/config.js';
import { isQuirk, type Quirk } from './bmc/machine/quirks.js';
import { profileOf } from './bmc/profiles/profiles.js';
import { setUpProfile } from './bmc/redfish/profile-setup.js';
import { createNetwork, DATA_BRIDGE, destroyNamespace, namespaceExists, PROVISIONING_BRIDGE, spawnInNamespace } from './netns.js';
import { waitForHttp } from './ns-http.js';

const run = promisify(execFile);

export const SUBNET = { cidr: '192.0.2.0/24', gateway: '192.0.2.1', prefix: 24, dhcpFirst: '192.0.2.100', dhcpLast: '192.0.2.199' };
const BMC_NET = '198.51.100';
// The tagged network (LabOptions.vlan) on the provisioning bridge: the upper half of the BMCs' range,
// which uses only .11 to .60. No DHCP: servers on it have static addresses from their network-config.
export const TAGGED_SUBNET = { cidr: '198.51.100.128/25', gateway: '198.51.100.129', prefix: 25 };
const SERVICE_PORT = 8080;
const SERVICE_TLS_PORT = 8443;
// An ordinary web server with the OS images to provision (nginx: Range requests, like any image mirror).
const IMAGES_PORT = 8081;
export const TARGET_IMAGE = 'target-debian12-amd64.qcow2';

export interface LabOptions {
  namespace: string;
  stateDir: string;
  /** the repository: dist/, base-artifacts/out/ */
  repo: string;
  servers: number;
  memoryMiB: number;
  cpus: number;
  diskGiB: number;
  accel: 'tcg' | 'kvm';
  /** quirks by server name (on top of the server's BMC profile) */
  quirks: Record<string, Quirk[]>;
  /** BMC profiles by server name (lab/bmc/profiles: standard, dell, hpe, lenovo or a recording's directory) */
  profiles: Record<string, string>;
  /** servers the lab's DHCP server ignores (they boot and run on static addresses) */
  dhcpIgnore: string[];
  /** BMC timing overrides (tests shorten or lengthen the quirk windows) */
  bmcTimings?: BmcConfig['timings'];
  /**
   * Where each server's second NIC is cabled: the data bridge, or the provisioning bridge beside the
   * first one (two links to one switch, as a bond wants).
   */
  secondNic: 'data' | 'provisioning';
  /** A VLAN id (1-4094) tagged on the provisioning bridge, with TAGGED_SUBNET on the lab's side; 0: none. */
  vlan: number;
  serviceLogLevel: string;
}

export function defaultLabOptions(repo: string, overrides: Partial<LabOptions> = {}): LabOptions {
  const namespace = overrides.namespace ?? 'uod-lab';
  return {
    namespace,
    stateDir: `/var/tmp/uod-lab/${namespace}`,
    repo,
    servers: 2,
    memoryMiB: 1536,
    cpus: 1,
    diskGiB: 8,
    accel: 'tcg',
    quirks: {},
    profiles: {},
    dhcpIgnore: [],
    secondNic: 'data',
    vlan: 0,
    serviceLogLevel: 'debug',
    // An option given as undefined (a flag not passed) keeps its default.
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
}

export interface LabServer {
  name: string;
  uuid: string;
  serialNumber: string;
  bmc: { url: string; host: string; username: string; password: string; systemId: string; profile: string; quirks: Quirk[] };
  macs: string[];
  /** the NIC on the provisioning network (DHCP) is macs[0]; macs[1] is on the data bridge or beside it */
  provisioningMac: string;
  /** the BMC's state directory (NVRAM, QMP sockets, disks) */
  stateDir: string;
  /** path: the raw image file behind the disk (the BMC creates it empty; it survives power cycles) */
  disks: { kind: string; serial: string; wwn?: string; sizeGiB: number; path: string }[];
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

function serverPlan(opts: LabOptions, i: number) {
  const n = i + 1;
  const hex = n.toString(16).padStart(2, '0');
  const name = `server${n}`;
  const dir = join(opts.stateDir, name);
  return {
    name,
    dir,
    bmcAddress: `${BMC_NET}.${10 + n}`,
    taps: [`tap${n}p`, `tap${n}d`] as const,
    // Locally administered, fixed per server: the inventory can name them before the lab boots.
    macs: [`52:54:00:1a:${hex}:01`, `52:54:00:1a:${hex}:02`],
    serialNumber: `UODLAB${String(n).padStart(4, '0')}`,
    disks: [
      { kind: 'scsi-hd' as const, serial: `SCSI${String(n).padStart(4, '0')}A`, wwn: `0x5000c5000000${hex}0a`, sizeGiB: opts.diskGiB, path: join(dir, 'disk-scsi.raw') },
      { kind: 'nvme' as const, serial: `NVME${String(n).padStart(4, '0')}B`, sizeGiB: opts.diskGiB, path: join(dir, 'disk-nvme.raw') },
    ],
  };
}

/** Checks what a lab needs before anything is created, naming what is missing. */
function preflight(opts: LabOptions): void {
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces, tap devices)');
  for (const file of ['dist/cli.js', 'dist/lab/bmc/main.js']) {
    if (!existsSync(join(opts.repo, file))) throw new Error(`${file} is missing: run "make build"`);
  }
  for (const file of ['vmlinuz-amd64', 'initramfs-amd64.img']) {
    if (!existsSync(join(opts.repo, 'base-artifacts/out', file))) throw new Error(`base-artifacts/out/${file} is missing: run "make base-artifacts"`);
  }
  for (const file of ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd']) {
    if (!existsSync(file)) throw new Error(`${file} is missing: install the ovmf package (make deps)`);
  }
  if (!/^[a-z][a-z0-9-]{0,14}$/.test(opts.namespace)) throw new Error(`namespace "${opts.namespace}": 1-15 lower-case letters, digits and dashes`);
  if (!Number.isInteger(opts.servers) || opts.servers < 1 || opts.servers > 50) throw new Error(`servers: ${opts.servers} is not a number from 1 to 50`);
  if (!Number.isInteger(opts.memoryMiB) || opts.memoryMiB < 1024) throw new Error(`memory: ${opts.memoryMiB} MiB is too little for the ephemeral OS (at least 1024)`);
  if (!Number.isInteger(opts.diskGiB) || opts.diskGiB < 2) throw new Error(`disk size: ${opts.diskGiB} GiB is too small for the target image (at least 2)`);
  if (opts.secondNic !== 'data' && opts.secondNic !== 'provisioning') throw new Error(`second NIC: "${opts.secondNic}" is not data or provisioning`);
  if (!Number.isInteger(opts.vlan) || opts.vlan < 0 || opts.vlan > 4094) throw new Error(`vlan: ${opts.vlan} is not a VLAN id from 1 to 4094 (0: none)`);
  for (const [name, quirks] of Object.entries(opts.quirks)) {
    const m = /^server(\d+)$/.exec(name);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > opts.servers) throw new Error(`quirks: no server named "${name}" (servers are server1..server${opts.servers})`);
    for (const q of quirks) if (!isQuirk(q)) throw new Error(`quirks: "${q}" is not a quirk profile`);
  }
  const serverName = (what: string, name: string) => {
    const m = /^server(\d+)$/.exec(name);
    if (!m || Number(m[1]) < 1 || Number(m[1]) > opts.servers) throw new Error(`${what}: no server named "${name}" (servers are server1..server${opts.servers})`);
  };
  for (const [name, profile] of Object.entries(opts.profiles)) {
    serverName('profiles', name);
    profileOf(profile);
  }
  for (const name of opts.dhcpIgnore) serverName('no-dhcp', name);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    throw new Error(`openssl ${args[0]}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
  }
}

/** A CA and a certificate for the service's address, so servers can verify their HTTPS checkins. */
async function makeServiceCertificates(dir: string, address: string): Promise<{ ca: string; cert: string; key: string }> {
  const ca = join(dir, 'ca.pem'), caKey = join(dir, 'ca-key.pem'), cert = join(dir, 'service-cert.pem'), key = join(dir, 'service-key.pem'), csr = join(dir, 'service.csr');
  const ext = join(dir, 'service.ext');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650', '-subj', '/CN=uki-on-demand lab CA', '-keyout', caKey, '-out', ca]);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${address}`, '-keyout', key, '-out', csr]);
  writeFileSync(ext, `subjectAltName=IP:${address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '3650', '-extfile', ext, '-out', cert]);
  return { ca, cert, key };
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
      taps: plans.flatMap((p) => [[p.taps[0], PROVISIONING_BRIDGE], [p.taps[1], secondNicBridge]] as [string, string][]),
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
      // Servers that boot with a static address get no lease: a DHCP answer would hide a broken setup.
      ...plans.filter((p) => opts.dhcpIgnore.includes(p.name)).flatMap((p) => p.macs.map((mac) => `--dhcp-host=${mac},ignore`)),
    ], join(opts.stateDir, 'dnsmasq.out'));

    const certs = await makeServiceCertificates(opts.stateDir, SUBNET.gateway);
    const imagesUrl = `http://${SUBNET.gateway}:${IMAGES_PORT}`;
    const nginxConf = join(opts.stateDir, 'nginx.conf');
    writeFileSync(nginxConf, nginxConfig(opts.stateDir, join(opts.repo, 'base-artifacts/out'), `${SUBNET.gateway}:${IMAGES_PORT}`));
    spawnInNamespace(ns, 'nginx', ['-c', nginxConf, '-e', join(opts.stateDir, 'nginx-error.log')], join(opts.stateDir, 'nginx.out'));
    const sshKey = join(opts.stateDir, 'orchestrator_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `orchestrator@${ns}`, '-f', sshKey]);
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
    ], serviceLog);

    const servers: LabServer[] = [];
    for (const p of plans) {
      mkdirSync(p.dir, { recursive: true });
      const password = randomBytes(9).toString('base64url');
      const { profile, systemId } = setUpProfile(opts.profiles[p.name] ?? 'standard');
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
          name: p.name,
          uuid: randomUUID(),
          serialNumber: p.serialNumber,
          memoryMiB: opts.memoryMiB,
          cpus: opts.cpus,
          accel: opts.accel,
          firmwareCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
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
    writeFileSync(description.inventory, ansibleInventory(description), { mode: 0o600 });
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
  rmSync(stateDir, { recursive: true, force: true });
}

function nginxConfig(stateDir: string, root: string, listen: string): string {
  return `# The lab's image web server: ${root}, read-only, with Range support.
# Workers run as root like the rest of the lab: the repository may sit where nobody else can read.
user root;
pid ${join(stateDir, 'nginx.pid')};
worker_processes 1;
events { worker_connections 256; }
http {
  access_log ${join(stateDir, 'nginx-access.log')};
  client_body_temp_path ${stateDir};
  proxy_temp_path ${stateDir};
  fastcgi_temp_path ${stateDir};
  uwsgi_temp_path ${stateDir};
  scgi_temp_path ${stateDir};
  types { application/octet-stream qcow2 img; }
  sendfile on;
  server {
    listen ${listen};
    root ${root};
    autoindex on;
    location / { limit_except GET { deny all; } }
  }
}
`;
}

/** The lab's servers as an Ansible inventory for orchestrator/ (group `servers`). */
function ansibleInventory(d: LabDescription): string {
  const q = (v: unknown) => JSON.stringify(v);
  const lines = [
    `# The servers of lab "${d.namespace}" (written by make lab). Run the playbooks inside its namespace:`,
    `#   cd orchestrator && ip netns exec ${d.namespace} ansible-playbook -i ${d.inventory} inspect.yml`,
    'all:',
    '  children:',
    '    servers:',
    '      vars:',
    `        uod_api_url: ${q(d.serviceUrl)}`,
    `        uod_callback_url: ${q(d.serviceUrl)}`,
    `        uod_callback_tls_url: ${q(d.serviceTlsUrl)}`,
    `        uod_ca_cert: ${q(d.serviceCaCert)}`,
    `        ssh_private_key_file: ${q(d.sshKey)}`,
    `        inventory_output_dir: ${q(join(d.stateDir, 'inspections'))}`,
    ...(d.network.vlan
      ? [`        server_vlan: ${d.network.vlan.id}`, `        server_subnet: ${q(d.network.vlan.cidr)}`, `        server_gateway: ${q(d.network.vlan.gateway)}`]
      : [`        server_subnet: ${q(d.network.cidr)}`, `        server_gateway: ${q(d.network.gateway)}`]),
    `        server_dns: ${q(d.network.dns)}`,
    `        qcow2_image_url: ${q(d.targetImageUrl)}`,
    '      hosts:',
  ];
  for (const [i, s] of d.servers.entries()) {
    // Alternate the OS disk between the SCSI disk (listed by WWN under /dev/disk/by-id) and the NVMe one.
    const disk = s.disks[i % s.disks.length]!;
    lines.push(
      `        ${s.name}:`,
      `          bmc_host: ${q(s.bmc.host)}`,
      `          bmc_username: ${q(s.bmc.username)}`,
      `          bmc_password: ${q(s.bmc.password)}`,
      `          bmc_resource_id: ${q(s.bmc.systemId)}`,
      `          server_mac: ${q(s.provisioningMac)}`,
      // Both NICs on the provisioning bridge: provision onto a bond of the two (on the VLAN, if any).
      ...(d.network.secondNicBridge === d.network.bridge ? [`          server_bond_macs: ${q(s.macs)}`] : []),
      `          disk_serial: ${q(disk.serial)}`,
      '          boot_method: cd',
    );
  }
  return lines.join('\n') + '\n';
}
