#!/usr/bin/env node
// make lab / make lab-down:
//   node dist/lab/cli.js up [--servers N] [--memory MiB] [--cpus N] [--disk-gib N] [--accel tcg|kvm]
//                           [--namespace NAME] [--state-dir DIR] [--quirks server2=post-lock,eject-lag]...
//                           [--second-nic data|provisioning] [--vlan ID]
//                           [--bmc-profile dell] [--bmc-profiles dell,hpe,...] [--static-servers server1,...]
//                           [--secure-boot all|server1,...] [--tpm all|server1,...]
//                           [--simulated N] [--simulated-link-mbps MBPS]
//   node dist/lab/cli.js down [--namespace NAME] [--state-dir DIR]
// `up` prints every address, credential and next step; its last line is the path of the lab's JSON
// description. `up` on a running lab only reports it.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Quirk } from './bmc/machine/quirks.js';
import { defaultLabOptions, descriptionPath, labDown, labUp, type LabDescription } from './lab.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`--${name}: "${value}" is not a whole number`);
  return Number(value);
}

function quirks(values: string[]): Record<string, Quirk[]> {
  const out: Record<string, Quirk[]> = {};
  for (const v of values.flatMap((s) => s.split(/\s+/)).filter(Boolean)) {
    const m = /^([a-z0-9]+)=([a-z,-]+)$/.exec(v);
    if (!m) throw new Error(`--quirks: "${v}" is not SERVER=QUIRK[,QUIRK...]`);
    out[m[1]!] = m[2]!.split(',').filter(Boolean) as Quirk[];
  }
  return out;
}

/** One profile for every server, or a list in server order (the list wins where it names one). */
function profiles(servers: number, all: string | undefined, list: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const each = (list ?? '').split(',').map((p) => p.trim());
  for (let i = 0; i < servers; i++) {
    const name = each[i] || all;
    if (name) out[`server${i + 1}`] = name;
  }
  if (each.filter(Boolean).length > servers) throw new Error(`--bmc-profiles: ${each.length} profiles for ${servers} servers`);
  return out;
}

function report(d: LabDescription, created: boolean): void {
  const ns = d.namespace;
  const say = (s = '') => console.log(s);
  say(created ? `Lab "${ns}" is up.` : `Lab "${ns}" is already running.`);
  say();
  say(`Network (namespace ${ns}): ${d.network.cidr} on ${d.network.bridge}, gateway ${d.network.gateway}, DHCP ${d.network.dhcpRange.join('-')} (log ${d.dhcpLog})`);
  if (d.network.vlan) say(`  VLAN ${d.network.vlan.id}: ${d.network.vlan.cidr} on ${d.network.vlan.interface}, gateway ${d.network.vlan.gateway}, no DHCP`);
  say(`  second NICs on ${d.network.secondNicBridge}`);
  say(`Build service: ${d.serviceUrl} and ${d.serviceTlsUrl} (CA ${d.serviceCaCert}; log ${d.serviceLog})`);
  say(`Images: ${d.imagesUrl}/ (target OS ${d.targetImageUrl})`);
  say(`Orchestrator: SSH key ${d.sshKey}, Ansible inventory ${d.inventory}`);
  say();
  for (const s of d.servers) {
    say(`${s.name}${s.kind === 'simulated' ? ' (simulated)' : ''}: BMC ${s.bmc.url}  user ${s.bmc.username}  password ${s.bmc.password}  system ${s.bmc.systemId}  profile ${s.bmc.profile}${s.bmc.quirks.length ? `  quirks ${s.bmc.quirks.join(',')}` : ''}`);
    say(`  MACs ${s.macs.join(' ')}  disks ${s.disks.map((k) => `${k.kind}:${k.serial}${k.wwn ? `:${k.wwn}` : ''}`).join(' ')}`);
    say(`  console: tail -f ${s.console}`);
  }
  const first = d.servers[0]!;
  say();
  say('Next steps:');
  say(`  ip netns exec ${ns} curl -sk -u ${first.bmc.username}:${first.bmc.password} ${first.bmc.url}/redfish/v1/Systems/${first.bmc.systemId}`);
  say(`  ip netns exec ${ns} curl -s ${d.serviceUrl}/healthz`);
  say(`  cd orchestrator && ip netns exec ${ns} ansible-playbook -i ${d.inventory} inspect.yml`);
  say(`  cd orchestrator && ip netns exec ${ns} ansible-playbook -i ${d.inventory} provision.yml`);
  say('  README.md, "The lab": boot a server from an ISO the service built, with curl');
  say('  make lab-down   stops everything and removes the network');
  say(descriptionPath(d.stateDir));
}

/** "all", or servers by name, comma-separated. */
function serverList(servers: number, value: string | undefined): string[] {
  if (value === 'all') return Array.from({ length: servers }, (_, i) => `server${i + 1}`);
  return (value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const { values } = parseArgs({
    args: rest,
    options: {
      servers: { type: 'string' }, memory: { type: 'string' }, cpus: { type: 'string' }, 'disk-gib': { type: 'string' },
      accel: { type: 'string' }, namespace: { type: 'string' }, 'state-dir': { type: 'string' }, quirks: { type: 'string', multiple: true },
      'second-nic': { type: 'string' }, vlan: { type: 'string' },
      'bmc-profile': { type: 'string' }, 'bmc-profiles': { type: 'string' }, 'static-servers': { type: 'string' }, 'secure-boot': { type: 'string' },
      tpm: { type: 'string' }, simulated: { type: 'string' }, 'simulated-link-mbps': { type: 'string' },
    },
  });
  const base = defaultLabOptions(REPO, { namespace: values.namespace || undefined });
  const stateDir = values['state-dir'] || base.stateDir;
  if (command === 'down') {
    await labDown(base.namespace, stateDir);
    console.log(`Lab "${base.namespace}" is down: its processes, namespace and ${stateDir} are gone.`);
    return;
  }
  if (command !== 'up') throw new Error('usage: lab up|down [options] (see lab/cli.ts)');
  const accel = values.accel || base.accel;
  if (accel !== 'tcg' && accel !== 'kvm') throw new Error(`--accel: "${accel}" is not tcg or kvm`);
  const servers = int('servers', values.servers) ?? base.servers;
  const opts = {
    ...base,
    stateDir,
    accel: accel as 'tcg' | 'kvm',
    servers,
    profiles: profiles(servers, values['bmc-profile'] || undefined, values['bmc-profiles'] || undefined),
    staticServers: (values['static-servers'] ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    // "all", or the servers by name
    secureBootServers: serverList(servers, values['secure-boot']),
    tpmServers: serverList(servers, values.tpm),
    memoryMiB: int('memory', values.memory) ?? base.memoryMiB,
    cpus: int('cpus', values.cpus) ?? base.cpus,
    diskGiB: int('disk-gib', values['disk-gib']) ?? base.diskGiB,
    quirks: quirks(values.quirks ?? []),
    secondNic: (values['second-nic'] || base.secondNic) as 'data' | 'provisioning',
    vlan: int('vlan', values.vlan) ?? base.vlan,
    simulated: int('simulated', values.simulated) ?? base.simulated,
    simulatedLinkMbps: int('simulated-link-mbps', values['simulated-link-mbps']) ?? base.simulatedLinkMbps,
  };
  const { description, created } = await labUp(opts);
  report(description, created);
}

main().catch((err: unknown) => {
  console.error(`lab: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
