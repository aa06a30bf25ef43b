// A lab's plan: its options and defaults, the fixed addresses of its networks, each server's names,
// MACs, disks and BMC address, and the checks made before anything is created.
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import type { BmcConfig } from './bmc/config.js';
import { isQuirk, type Quirk } from './bmc/machine/quirks.js';
import { profileOf } from './bmc/profiles/profiles.js';

export const SUBNET = { cidr: '192.0.2.0/24', gateway: '192.0.2.1', prefix: 24, dhcpFirst: '192.0.2.100', dhcpLast: '192.0.2.199' };
export const BMC_NET = '198.51.100';
// The tagged network (LabOptions.vlan) on the provisioning bridge: the upper half of the BMCs' range,
// which uses only .11 to .60. No DHCP: servers on it have static addresses from their network-config.
export const TAGGED_SUBNET = { cidr: '198.51.100.128/25', gateway: '198.51.100.129', prefix: 25 };
export const SERVICE_PORT = 8080;
export const SERVICE_TLS_PORT = 8443;
// An ordinary web server with the OS images to provision (nginx: Range requests, like any image mirror).
export const IMAGES_PORT = 8081;
export const TARGET_IMAGE = 'target-debian12-amd64.qcow2';
/** The certificate the target image's UKI is signed with (make target-image), when it is signed. */
export const TARGET_IMAGE_CERT = 'target-debian12-amd64.secure-boot.pem';
export const FIRMWARE_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const SECURE_BOOT_CODE = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
export const SWTPM = '/usr/bin/swtpm';
export const SYSTEMD_NSPAWN = '/usr/bin/systemd-nspawn';

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
  /**
   * Servers that run on static addresses: the DHCP server answers only their firmware's UEFI HTTP boot
   * (OVMF ignores a static address in the boot entry: lab/README.md), never their OSes.
   */
  staticServers: string[];
  /**
   * Servers whose firmware enforces Secure Boot (OVMF's secboot build), with PK and KEK of the lab's
   * platform key and db holding only a key the lab made: the service's certificate must be enrolled.
   */
  secureBootServers: string[];
  /** Servers with a TPM 2.0 (swtpm): the firmware and systemd-stub measure into it, the OS reads PCR 11. */
  tpmServers: string[];
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
  /**
   * How many of the servers are simulated (systemd-nspawn, lab/bmc/simulated): the last ones, so
   * servers 1..(servers - simulated) stay QEMU servers.
   */
  simulated: number;
  /** A simulated server's link speed in Mbit/s for reading its boot artifact (0: unpaced). */
  simulatedLinkMbps: number;
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
    staticServers: [],
    secureBootServers: [],
    tpmServers: [],
    secondNic: 'data',
    vlan: 0,
    serviceLogLevel: 'debug',
    simulated: 0,
    simulatedLinkMbps: 1000,
    // An option given as undefined (a flag not passed) keeps its default.
    ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)),
  };
}

export function serverPlan(opts: LabOptions, i: number) {
  const n = i + 1;
  const hex = n.toString(16).padStart(2, '0');
  const name = `server${n}`;
  const dir = join(opts.stateDir, name);
  return {
    name,
    dir,
    kind: (i >= opts.servers - opts.simulated ? 'simulated' : 'qemu') as 'simulated' | 'qemu',
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
export function preflight(opts: LabOptions): void {
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
  for (const name of opts.staticServers) serverName('static-servers', name);
  for (const name of opts.secureBootServers) serverName('secure-boot', name);
  if (opts.secureBootServers.length && !existsSync(SECURE_BOOT_CODE)) throw new Error(`${SECURE_BOOT_CODE} is missing: install the ovmf package (make deps)`);
  for (const name of opts.tpmServers) serverName('tpm', name);
  if (!Number.isInteger(opts.simulated) || opts.simulated < 0 || opts.simulated > opts.servers) throw new Error(`simulated: ${opts.simulated} is not a number from 0 to ${opts.servers} (the servers)`);
  if (!(opts.simulatedLinkMbps >= 0)) throw new Error(`simulated link speed: ${opts.simulatedLinkMbps} is not a number of Mbit/s (0: unpaced)`);
  if (opts.simulated > 0) {
    if (!existsSync(SYSTEMD_NSPAWN)) throw new Error(`${SYSTEMD_NSPAWN} is missing: install the systemd-container package (make deps)`);
    const firstSimulated = opts.servers - opts.simulated + 1;
    for (const [what, names] of [['secure-boot', opts.secureBootServers], ['tpm', opts.tpmServers]] as const) {
      const sim = names.find((n) => Number(n.replace('server', '')) >= firstSimulated);
      if (sim) throw new Error(`${what}: ${sim} is a simulated server (no firmware, no TPM); simulated are server${firstSimulated}..server${opts.servers}`);
    }
  }
  if (opts.tpmServers.length && !existsSync(SWTPM)) throw new Error(`${SWTPM} is missing: install the swtpm package (make deps)`);
}

