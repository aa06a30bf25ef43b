// The cgroups of simulated servers. systemd-nspawn runs with --keep-unit (the host's PID 1 is not
// systemd), so a container's systemd manages the cgroup nspawn was started in: each server gets its
// own, <hierarchy>/uod-simulated/<its namespace>, or every container's systemd would create and
// delete the same system.slice/<unit> cgroups under one shared parent (units failing at random with
// "Failed to attach to cgroup").
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = '/sys/fs/cgroup';
const PARENT = 'uod-simulated';

/**
 * The hierarchies a container's systemd uses: the unified one alone on a cgroup v2 host; on a hybrid
 * host (v1 controllers), systemd's named v1 hierarchy and the unified one beside it.
 */
function hierarchies(): string[] {
  if (existsSync(join(ROOT, 'cgroup.controllers'))) return [ROOT];
  return [join(ROOT, 'systemd'), join(ROOT, 'unified')].filter((h) => existsSync(h));
}

/**
 * systemd-nspawn needs the cgroup hierarchies, which `ip netns exec` (how the lab starts its BMCs)
 * hides by mounting a fresh sysfs. The host's are mounted again, as the host has them (its PID 1's
 * mount table), in this BMC's own mount namespace only: a cgroup mount with the same options is the
 * same hierarchy.
 */
export async function ensureCgroupMounts(): Promise<void> {
  if (readdirSync(ROOT).length > 0) return;
  const mounts = readFileSync('/proc/1/mountinfo', 'utf8').split('\n').map((line) => {
    const [before, after] = line.split(' - ');
    const point = before?.split(' ')[4];
    const [type, , options] = (after ?? '').split(' ');
    return { point, type, options };
  }).filter((m) => m.point?.startsWith(ROOT));
  for (const m of mounts) {
    await run('mkdir', ['-p', m.point!]);
    await run('mount', ['-t', m.type!, '-o', m.options!, m.type!, m.point!]);
  }
}

/** Creates the server's cgroups and returns them (a process joins by writing its PID to cgroup.procs). */
export async function serverCgroups(netns: string): Promise<string[]> {
  const dirs = hierarchies().map((h) => join(h, PARENT, netns));
  for (const dir of dirs) await mkdir(dir, { recursive: true });
  return dirs;
}

/** Removes a cgroup and what its container's systemd left below it (empty once its processes are gone). */
function removeTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    /* still has processes: removed at lab-down */
  }
}

/** Removes the cgroups of every server whose namespace name passes `match`. */
export function removeServerCgroups(match: (netns: string) => boolean): void {
  for (const h of hierarchies()) {
    const parent = join(h, PARENT);
    if (!existsSync(parent)) continue;
    for (const e of readdirSync(parent, { withFileTypes: true })) if (e.isDirectory() && match(e.name)) removeTree(join(parent, e.name));
    if (!readdirSync(parent, { withFileTypes: true }).some((e) => e.isDirectory())) removeTree(parent);
  }
}
