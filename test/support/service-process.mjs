// The service as a child process (`node dist/cli.js serve`, as an operator runs it), for every caller
// that needs a real process: API tests (restarts), reliability tests (SIGKILL at any moment) and the
// benchmarks. Plain JavaScript so that the benchmarks (plain .mjs) import it too; types in the .d.mts.
// Every child started here is killed, and every data directory made here removed, when the importing
// process exits by any path.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const CLI = path.join(REPO, 'dist/cli.js');
export const BASE_ARTIFACTS = path.join(REPO, 'base-artifacts/out');

/** Output kept in memory per child: the tail, bounded so that a chatty child cannot eat memory. */
const MAX_LOG = 16 * 1024 * 1024;

/** @type {Set<{ proc: import('node:child_process').ChildProcess, group: boolean }>} */
const live = new Set();
/** @type {Set<string>} */
const madeDirs = new Set();

function running(proc) {
  return proc.exitCode === null && proc.signalCode === null;
}

function signal(proc, group, sig) {
  if (!running(proc)) return;
  try {
    if (group) process.kill(-proc.pid, sig);
    else proc.kill(sig);
  } catch {
    // gone meanwhile
  }
}

// Synchronous: runs on every exit of the importing process, including process.exit() from a signal handler.
process.once('exit', () => {
  for (const { proc, group } of live) signal(proc, group, 'SIGKILL');
  for (const dir of madeDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed by stopAllServices() or at exit. */
export function serviceTempDir(prefix = 'data') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `uod-${prefix}-`));
  madeDirs.add(dir);
  return dir;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

function healthz(url) {
  return new Promise((resolve) => {
    const req = http.get(`${url}/healthz`, { timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/**
 * Spawns the service and returns at once. `listening` resolves when it is ready (the "listening" log
 * line, whose address makes port 0 work; or /healthz with readiness 'healthz') and rejects when it
 * exits first or does not get ready in time. The process may be signalled before that: a crash
 * during start-up.
 */
export function spawnService(opts = {}) {
  const dataDir = opts.dataDir === undefined ? serviceTempDir('data') : opts.dataDir;
  const baseArtifacts = opts.baseArtifacts === undefined ? BASE_ARTIFACTS : opts.baseArtifacts;
  const listen = opts.listen === undefined ? '127.0.0.1:0' : opts.listen;
  const readiness = opts.readiness ?? 'log';
  if (readiness === 'healthz' && (listen === null || /:0$/.test(listen))) {
    throw new Error('readiness "healthz" needs a listen address with a fixed port');
  }
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const group = opts.processGroup === true;
  const args = [
    ...(opts.nodeArgs ?? []),
    opts.cli ?? CLI, 'serve',
    ...(listen === null ? [] : ['--listen', listen]),
    ...(dataDir === null ? [] : ['--data-dir', dataDir]),
    ...(baseArtifacts === null ? [] : ['--base-artifacts', baseArtifacts]),
    ...(opts.args ?? []),
  ];
  // The "listening" line is an info log: info unless the caller says otherwise.
  const env = { ...process.env, UOD_LOG_LEVEL: 'info' };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const t0 = Date.now();
  const proc = spawn(process.execPath, args, { cwd: opts.cwd ?? REPO, env, stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  const entry = { proc, group };
  live.add(entry);

  let output = '';
  let dropped = 0;
  const logFile = opts.logFile ? fs.createWriteStream(opts.logFile, { flags: 'a' }) : null;
  const append = (d) => {
    logFile?.write(d);
    output += d.toString();
    if (output.length > MAX_LOG) {
      dropped += output.length - MAX_LOG / 2;
      output = output.slice(-MAX_LOG / 2);
    }
  };
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
  const logs = () => (dropped ? `[${dropped} characters dropped]\n${output}` : output);

  /** @type {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} */
  // 'exit', then what is still in the pipes (the last log lines), but not 'close': after a SIGKILL the
  // tools the service ran may hold its stdout for a while, so the pipes get at most 2 s.
  const drained = Promise.all([proc.stdout, proc.stderr].map((s) => new Promise((r) => s.once('end', r).once('error', r))));
  const exited = new Promise((resolve) => {
    proc.once('error', (err) => {
      append(`spawn failed: ${err.message}\n`);
      live.delete(entry);
      resolve({ code: null, signal: null });
    });
    proc.once('exit', (code, sig) => {
      live.delete(entry);
      const timer = setTimeout(() => resolve({ code, signal: sig }), 2_000);
      void drained.then(() => {
        clearTimeout(timer);
        resolve({ code, signal: sig });
      });
    });
  });
  proc.once('close', () => logFile?.end());
  const describeExit = (s) => (s.signal ? `signal ${s.signal}` : `code ${s.code}`);

  const kill = async () => {
    signal(proc, group, 'SIGKILL');
    await exited;
  };
  const stop = async (sig = 'SIGTERM', graceMs = 30_000) => {
    signal(proc, group, sig);
    const timer = setTimeout(() => signal(proc, group, 'SIGKILL'), graceMs);
    try {
      return (await exited).code;
    } finally {
      clearTimeout(timer);
    }
  };

  const bound = new Promise((resolve, reject) => {
    let done = false;
    const finish = (fn) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      fn();
    };
    const timer = setTimeout(
      () => finish(() => reject(new Error(`service did not get ready within ${startTimeoutMs} ms:\n${logs().slice(-4000)}`))),
      startTimeoutMs,
    );
    let partial = '';
    const onData = (d) => {
      if (readiness !== 'log') return;
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.includes('"msg":"listening"')) continue;
        const parsed = JSON.parse(line);
        finish(() => resolve({ http: parsed.http, https: parsed.https ?? null }));
        return;
      }
    };
    proc.stdout.on('data', onData);
    if (readiness === 'healthz') {
      const url = `http://${listen}`;
      const poll = async () => {
        while (!done) {
          if (await healthz(url)) return finish(() => resolve({ http: listen, https: null }));
          await new Promise((r) => setTimeout(r, 25));
        }
      };
      poll();
    }
    exited.then((s) => finish(() => reject(new Error(`service exited (${describeExit(s)}) before listening:\n${logs().slice(-4000)}`))));
  });

  const listening = bound.then(({ http: h, https }) => ({
    url: `http://${h}`,
    tlsUrl: https ? `https://${https}` : null,
    port: Number(/:(\d+)$/.exec(h)?.[1]),
    pid: /** @type {number} */ (proc.pid),
    dataDir,
    startupMs: Date.now() - t0,
    proc,
    exited,
    logs,
    stop,
    kill,
  }));
  listening.catch(() => {});
  return { proc, pid: proc.pid, dataDir, exited, listening, logs, stop, kill };
}

/** Spawns the service and waits until it is ready; a service that does not get ready is killed. */
export async function startService(opts = {}) {
  const spawned = spawnService(opts);
  try {
    return await spawned.listening;
  } catch (err) {
    await spawned.kill();
    throw err;
  }
}

/** SIGKILLs every child started here that still runs, waits for them, and removes the directories made here. */
export async function stopAllServices() {
  await Promise.all(
    [...live].map(
      ({ proc, group }) =>
        new Promise((resolve) => {
          if (!running(proc)) return resolve(undefined);
          proc.once('exit', () => resolve(undefined));
          signal(proc, group, 'SIGKILL');
        }),
    ),
  );
  for (const dir of madeDirs) fs.rmSync(dir, { recursive: true, force: true });
  madeDirs.clear();
}
