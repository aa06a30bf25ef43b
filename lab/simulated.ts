// The lab's side of simulated servers (lab/bmc/simulated): each one's network namespace, named after
// the lab's (`<lab>.<server>`: a dot no lab namespace has), with its NICs as veths whose other ends
// are on the lab's bridges; the base root unpacked once for all; and their removal at lab-down.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { removeServerCgroups } from './bmc/simulated/cgroups.js';
import { detachDisk } from './bmc/simulated/devices.js';
import { unpackBase, type BaseRoot } from './bmc/simulated/rootfs.js';
import { destroyNamespace, ip } from './netns.js';

const run = promisify(execFile);

/** A simulated server's network namespace. */
export function serverNamespace(lab: string, server: string): string {
  return `${lab}.${server}`;
}

/** The name of a simulated server's i-th NIC inside it: what a QEMU server's OS calls its NIC in that slot. */
export function simulatedNicName(i: number): string {
  return `enp0s${3 + i}`;
}

export interface SimulatedNic {
  mac: string;
  /** the veth's end in the lab's namespace, on `bridge` */
  tap: string;
  bridge: string;
  /** the NIC's name inside the server (QEMU's guests see enp0s<slot>) */
  ifname: string;
}

/** Creates the server's namespace and its NICs (they stay, like a server's cards, until lab-down). */
export async function createServerNetwork(lab: string, server: string, nics: SimulatedNic[]): Promise<string> {
  const ns = serverNamespace(lab, server);
  await ip('netns', 'add', ns);
  for (const nic of nics) {
    await ip('-n', lab, 'link', 'add', nic.tap, 'type', 'veth', 'peer', 'name', nic.ifname, 'address', nic.mac, 'netns', ns);
    await ip('-n', lab, 'link', 'set', nic.tap, 'master', nic.bridge, 'up');
  }
  return ns;
}

/** Unpacks the base initramfs every simulated server's root starts from. */
export function unpackBaseRoot(stateDir: string, initramfs: string): Promise<BaseRoot> {
  return unpackBase(initramfs, join(stateDir, 'simulated-root'));
}

const INOTIFY_INSTANCES = '/proc/sys/fs/inotify/max_user_instances';
const INOTIFY_SAVED = 'inotify-max-user-instances.orig';

/**
 * systemd as PID 1 of a container holds about six inotify instances, all counted against root's
 * host-wide limit (often 128, reached at about 20 containers). The lab raises it for its simulated
 * servers if lower, keeps the old value in its state directory and puts it back at lab-down.
 */
export function raiseInotifyLimit(stateDir: string, simulated: number): void {
  const current = Number(readFileSync(INOTIFY_INSTANCES, 'utf8').trim());
  const needed = 128 + 16 * simulated;
  if (current >= needed) return;
  writeFileSync(join(stateDir, INOTIFY_SAVED), `${current}\n`);
  writeFileSync(INOTIFY_INSTANCES, `${needed}\n`);
}

function restoreInotifyLimit(stateDir: string): void {
  const saved = join(stateDir, INOTIFY_SAVED);
  if (existsSync(saved)) writeFileSync(INOTIFY_INSTANCES, readFileSync(saved, 'utf8'));
}

/** Stops every simulated server of the lab (their processes), deletes their namespaces, frees their disks, restores the inotify limit. */
export async function removeSimulated(lab: string, stateDir: string): Promise<void> {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns').filter((n) => n.startsWith(`${lab}.`));
  } catch {
    /* no namespaces at all */
  }
  for (const ns of names) await destroyNamespace(ns, 2_000);
  removeServerCgroups((ns) => ns.startsWith(`${lab}.`));
  for (const file of await loopBackingFiles()) if (file.startsWith(`${resolve(stateDir)}/`)) await detachDisk(file);
  restoreInotifyLimit(stateDir);
}

async function loopBackingFiles(): Promise<string[]> {
  const { stdout } = await run('losetup', ['-l', '-n', '-O', 'BACK-FILE']).catch(() => ({ stdout: '' }));
  return stdout.split('\n').map((l) => l.trim().replace(/ \(deleted\)$/, '')).filter(Boolean);
}
