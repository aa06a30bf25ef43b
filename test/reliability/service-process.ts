// The service as a child process (`node dist/cli.js serve`) that a test may SIGKILL at any moment, plus
// the bookkeeping that guarantees every child started here is gone when the test file ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from '../support/service.js';

export interface ServiceProcess {
  /** http://127.0.0.1:PORT of the plain listener. */
  url: string;
  /** https://HOST:PORT of the TLS listener, when one was asked for. */
  tlsUrl: string | null;
  pid: number;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  logs(): string;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
  /** SIGTERM and wait: a graceful stop. */
  stop(): Promise<number | null>;
}

const live = new Set<ChildProcess>();

// A worker that dies (timeout, crash) must not leave services listening behind it.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Kills (SIGKILL) every child this module started that is still running, and waits for them. */
export async function killAllServices(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

export interface SpawnOptions {
  dataDir: string;
  baseArtifacts: string;
  /** Extra CLI flags, e.g. ['--build-concurrency', '2']. */
  args?: string[];
  /** Defaults to 127.0.0.1:0. */
  listen?: string;
  /** How long to wait for the "listening" log line. */
  startTimeoutMs?: number;
}

/** Output kept per child: enough for a failure message, bounded so a chatty child cannot eat memory. */
const MAX_LOG = 256 * 1024;

/**
 * Spawns the service. `listening` resolves with the URL once it logs that it listens; the process may
 * be killed before that (a crash during start-up).
 */
export function spawnService(opts: SpawnOptions): { proc: ChildProcess; listening: Promise<{ url: string; tlsUrl: string | null }>; service: Promise<ServiceProcess> } {
  const args = [
    CLI, 'serve',
    '--listen', opts.listen ?? '127.0.0.1:0',
    '--data-dir', opts.dataDir,
    '--base-artifacts', opts.baseArtifacts,
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UOD_LOG_LEVEL: 'info' } });
  live.add(proc);
  let output = '';
  const append = (d: Buffer) => {
    output += d.toString();
    if (output.length > MAX_LOG) output = output.slice(-MAX_LOG / 2);
  };
  proc.stdout!.on('data', append);
  proc.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      live.delete(proc);
      resolve(code);
    }),
  );

  const listening = new Promise<{ url: string; tlsUrl: string | null }>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`service did not start within ${opts.startTimeoutMs ?? 30_000} ms:\n${output.slice(-4000)}`)), opts.startTimeoutMs ?? 30_000);
    const onData = (d: Buffer) => {
      seen += d.toString();
      for (const line of seen.split('\n')) {
        if (!line.includes('"msg":"listening"')) continue;
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        const bound = JSON.parse(line) as { http: string; https: string | null };
        resolve({ url: `http://${bound.http}`, tlsUrl: bound.https ? `https://${bound.https}` : null });
        return;
      }
      seen = seen.slice(seen.lastIndexOf('\n') + 1);
    };
    proc.stdout!.on('data', onData);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`service exited (${code}) before listening:\n${output.slice(-4000)}`));
    });
  });
  listening.catch(() => {});

  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  };
  const service = listening.then(({ url, tlsUrl }) => ({
    url,
    tlsUrl,
    pid: proc.pid as number,
    exited,
    logs: () => output,
    kill,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  }));
  service.catch(() => {});
  return { proc, listening, service };
}

/** Spawns the service and waits until it listens. */
export async function startService(opts: SpawnOptions): Promise<ServiceProcess> {
  const spawned = spawnService(opts);
  try {
    return await spawned.service;
  } catch (err) {
    spawned.proc.kill('SIGKILL');
    throw err;
  }
}
