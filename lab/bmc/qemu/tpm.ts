// A server's TPM 2.0: swtpm, one process per power-on over a state directory that outlives it (as a
// TPM chip keeps its NV storage), so that PCRs start from zero at every boot. QEMU connects to its
// control socket; swtpm ends when QEMU does (--terminate).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { killProcessGroup } from './process-group.js';

export interface TpmHardware {
  /** Where swtpm keeps the TPM's state between boots, and its control socket while it runs. */
  stateDir: string;
}

const SOCKET = 'swtpm.sock';

/** QEMU's part: a CRB interface (what q35 servers' firmware TPMs present) on swtpm's socket. */
export function tpmArgs(tpm: TpmHardware): string[] {
  return [
    '-chardev', `socket,id=chrtpm,path=${join(tpm.stateDir, SOCKET)}`,
    '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm',
    '-device', 'tpm-crb,tpmdev=tpm0',
  ];
}

/** Starts swtpm and resolves once its socket accepts QEMU; the process is returned to be killed with the machine. */
export async function startTpm(tpm: TpmHardware, timeoutMs = 10_000): Promise<ChildProcess> {
  mkdirSync(tpm.stateDir, { recursive: true, mode: 0o700 });
  const socket = join(tpm.stateDir, SOCKET);
  rmSync(socket, { force: true });
  const child = spawn('swtpm', [
    'socket', '--tpm2', '--tpmstate', `dir=${tpm.stateDir}`, '--ctrl', `type=unixio,path=${socket}`,
    '--terminate', '--log', `file=${join(tpm.stateDir, 'swtpm.log')},level=1`,
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`swtpm exited (${code}): ${stderr.trim()}`))));
  exited.catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(socket)) {
    if (Date.now() > deadline) {
      killProcessGroup(child);
      throw new Error(`swtpm did not open ${socket} within ${timeoutMs} ms: ${stderr.trim()}`);
    }
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20))]);
  }
  return child;
}
