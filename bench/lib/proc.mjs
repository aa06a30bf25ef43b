// Child processes of the benchmark (service, baselines, nginx, wrk, scripts): each runs in its own
// process group so that it can be killed with whatever it started, and every one still alive is killed
// when the benchmark exits by any path (normal end, exception, SIGINT/SIGTERM/SIGHUP).
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const live = new Set();

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Kills every child still running (process groups, SIGKILL). Synchronous: safe in 'exit' handlers. */
export function killAll() {
  for (const child of live) killGroup(child, 'SIGKILL');
  live.clear();
}

let installed = false;
export function installCleanup() {
  if (installed) return;
  installed = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping child processes\n`);
      killAll();
      process.exit(130);
    });
  }
}

/**
 * Starts a tracked child. `stdout`/`stderr` may be 'pipe', 'ignore' or a file path (appended).
 * Returns { child, exited } where `exited` resolves with { code, signal }.
 */
export function start(command, args, opts = {}) {
  const fds = [];
  const target = (s) => {
    if (s === undefined || s === 'pipe') return 'pipe';
    if (s === 'ignore' || s === 'inherit') return s;
    const fd = fs.openSync(s, 'a');
    fds.push(fd);
    return fd;
  };
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', target(opts.stdout), target(opts.stderr)],
    detached: true,
  });
  for (const fd of fds) fs.closeSync(fd);
  live.add(child);
  const exited = new Promise((resolve) => {
    child.once('error', (err) => {
      live.delete(child);
      resolve({ code: null, signal: null, error: err });
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, exited };
}

/** Sends `signal` to the child's group and waits up to `graceMs`, then SIGKILLs the group. */
export async function stop(handle, signal = 'SIGTERM', graceMs = 10_000) {
  const { child, exited } = handle;
  killGroup(child, signal);
  const timer = new Promise((r) => setTimeout(() => r('timeout'), graceMs));
  if ((await Promise.race([exited, timer])) === 'timeout') {
    killGroup(child, 'SIGKILL');
    await exited;
  }
  return exited;
}

/**
 * Runs a command to completion with a time bound; resolves with { code, signal, stdout, stderr, ms }.
 * Throws if it exceeds `timeoutMs` (the group is killed first).
 */
export async function run(command, args, opts = {}) {
  const t0 = process.hrtime.bigint();
  const handle = start(command, args, { ...opts, stdout: 'pipe', stderr: 'pipe' });
  let stdout = '';
  let stderr = '';
  handle.child.stdout.on('data', (d) => (stdout += d));
  handle.child.stderr.on('data', (d) => (stderr += d));
  const timeoutMs = opts.timeoutMs ?? 120_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(handle.child, 'SIGKILL');
  }, timeoutMs);
  const result = await handle.exited;
  clearTimeout(timer);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (timedOut) throw new Error(`${command} ${args.join(' ')} timed out after ${timeoutMs} ms\n${stderr.slice(-2000)}`);
  if (result.error) throw result.error;
  return { ...result, stdout, stderr, ms };
}

/** run() that throws on a non-zero exit, with the tail of stderr in the message. */
export async function runOk(command, args, opts = {}) {
  const r = await run(command, args, opts);
  if (r.code !== 0) {
    throw new Error(`${command} ${args.slice(0, 6).join(' ')} exited with ${r.code ?? r.signal}:\n${(r.stderr || r.stdout).slice(-3000)}`);
  }
  return r;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Flushes dirty pages so that one run's write-back does not land in the next run's timing. Bounded. */
export async function settleDisk(timeoutMs = 60_000) {
  try {
    await run('sync', [], { timeoutMs });
  } catch {
    // a sync stuck behind other machines' I/O must not stop the benchmark
  }
}

/** Peak and current RSS (kB) of a process from /proc, or null once it is gone. */
export function memoryOf(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const num = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { hwmKb: num('VmHWM'), rssKb: num('VmRSS') };
  } catch {
    return null;
  }
}

/** Pids of `pid` and all its descendants (from /proc/<pid>/task/<tid>/children). */
export function processTree(pid) {
  const out = [];
  const stack = [pid];
  while (stack.length && out.length < 10_000) {
    const p = stack.pop();
    out.push(p);
    let tasks = [];
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) stack.push(Number(c));
      } catch {
        // task ended meanwhile
      }
    }
  }
  return out;
}

/** CPU time (user + system, ms) used so far by `pid` and its descendants (e.g. nginx's workers). */
export function cpuTimeMs(pid) {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 1).split(' ');
      ticks += Number(fields[12]) + Number(fields[13]);
    } catch {
      // exited meanwhile
    }
  }
  // USER_HZ is 100 on Linux.
  return ticks * 10;
}
