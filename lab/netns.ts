// The lab's private network, all inside one network namespace: the provisioning bridge (an address
// from a documentation range; the servers' first NICs and dnsmasq live here), a data bridge with no
// DHCP (the servers' second NICs), and one address per BMC on the namespace's loopback (the BMCs'
// management network: reachable from the orchestrator's side, not from the servers). Nothing here
// touches the host's own interfaces, routes or firewall.
import { execFile, spawn, type SpawnOptions } from 'node:child_process';
import { openSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const PROVISIONING_BRIDGE = 'uodprov0';
export const DATA_BRIDGE = 'uoddata0';

export async function ip(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args);
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

export async function namespaceExists(ns: string): Promise<boolean> {
  const out = await ip('netns', 'list');
  return out.split('\n').some((line) => line.split(' ')[0] === ns);
}

export interface NetworkPlan {
  namespace: string;
  /** e.g. 192.0.2.1/24 */
  provisioningAddress: string;
  /** one /32 address per BMC, e.g. 198.51.100.11/32 */
  bmcAddresses: string[];
  /** tap devices: [name, bridge] */
  taps: [string, string][];
  /** a VLAN tagged on the provisioning bridge, with the lab's address on it */
  vlan?: { id: number; address: string };
}

/**
 * Creates the namespace and its links. With a VLAN, returns its two taps: `trunk` on the provisioning
 * bridge and `access` with the lab's address; lab/vlan-relay.py must then carry frames between them.
 */
export async function createNetwork(plan: NetworkPlan): Promise<{ trunk: string; access: string } | undefined> {
  const ns = plan.namespace;
  await ip('netns', 'add', ns);
  const nsip = (...args: string[]) => ip('-n', ns, ...args);
  await nsip('link', 'set', 'lo', 'up');
  for (const bridge of [PROVISIONING_BRIDGE, DATA_BRIDGE]) {
    // No STP and no forwarding delay: a tap is usable the moment QEMU opens it.
    await nsip('link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await nsip('link', 'set', bridge, 'up');
  }
  await nsip('addr', 'add', plan.provisioningAddress, 'dev', PROVISIONING_BRIDGE);
  for (const address of plan.bmcAddresses) await nsip('addr', 'add', address, 'dev', 'lo');
  for (const [tap, bridge] of plan.taps) {
    await nsip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
    await nsip('link', 'set', tap, 'master', bridge, 'up');
  }
  if (!plan.vlan) return undefined;
  // The bridge is not VLAN-aware: tagged frames pass between its ports as they are. The lab's side of
  // the VLAN is a user-space relay between a tap on the bridge and a tap holding the address, since
  // not every host kernel has 8021q or bridge VLAN filtering.
  const access = `uodvlan${plan.vlan.id}`;
  const trunk = `${access}t`;
  for (const tap of [trunk, access]) await nsip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
  await nsip('link', 'set', trunk, 'master', PROVISIONING_BRIDGE, 'up');
  await nsip('addr', 'add', plan.vlan.address, 'dev', access);
  await nsip('link', 'set', access, 'up');
  return { trunk, access };
}

/** Every process that runs inside the namespace (what the lab started, and their children). */
export async function namespacePids(ns: string): Promise<number[]> {
  if (!(await namespaceExists(ns))) return [];
  const out = await ip('netns', 'pids', ns);
  return out.split('\n').filter(Boolean).map(Number);
}

/** Stops every process of the namespace (TERM, then KILL after graceMs) and deletes it. */
export async function destroyNamespace(ns: string, graceMs = 5_000): Promise<void> {
  if (!(await namespaceExists(ns))) return;
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        /* gone */
      }
    }
  };
  signal(await namespacePids(ns), 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && (await namespacePids(ns)).length > 0) await new Promise((r) => setTimeout(r, 200));
  signal(await namespacePids(ns), 'SIGKILL');
  while ((await namespacePids(ns)).length > 0) await new Promise((r) => setTimeout(r, 100));
  await ip('netns', 'del', ns);
}

/** Starts a long-running program inside the namespace, detached from the caller, output to a log file. */
export function spawnInNamespace(ns: string, command: string, args: string[], logFile: string, options: SpawnOptions = {}): number {
  const out = openSync(logFile, 'a');
  const child = spawn('ip', ['netns', 'exec', ns, command, ...args], { ...options, stdio: ['ignore', out, out], detached: true });
  child.unref();
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  return child.pid;
}

/** Runs a short command inside the namespace and returns its output. */
export async function execInNamespace(ns: string, command: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('ip', ['netns', 'exec', ns, command, ...args], { timeout: timeoutMs, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
