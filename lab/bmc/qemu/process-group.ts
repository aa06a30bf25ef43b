// QEMU and swtpm run detached, each leading its own process group: killing the group also ends
// whatever they started.
import type { ChildProcess } from 'node:child_process';

/** SIGKILL to the child's process group; nothing when it has already exited. */
export function killProcessGroup(child: ChildProcess | null): void {
  if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}
