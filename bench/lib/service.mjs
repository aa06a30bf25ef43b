// The service under test as a child process (`node dist/cli.js serve`, as an operator runs it, started by
// test/support/service-process.mjs), the Fastify baseline server, and the few API calls the benchmark
// needs (undici, loopback only).
import fs from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { freePort, startService as startServiceProcess } from '../../test/support/service-process.mjs';
import { BENCH, REPO, WORK } from './paths.mjs';
import { sleep, start, stop } from './proc.mjs';

export { freePort };

/** The compiled service; BENCH_CLI points at another build of it (e.g. a checkout being compared). */
export const SERVICE_CLI = path.resolve(process.env.BENCH_CLI || path.join(REPO, 'dist', 'cli.js'));

/** Diagnostics only: extra node flags (e.g. --cpu-prof) and service flags for every service started. */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
const SERVICE_ARGS = (process.env.BENCH_SERVICE_ARGS ?? '').split(' ').filter(Boolean);

const agent = new Agent({ connections: 8, keepAliveTimeout: 10_000 });

/** Waits for a JSON log line with msg "listening" in `logFile`; returns it parsed. */
export async function waitForListening(logFile, handle, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let exited = null;
  handle.exited.then((r) => (exited = r));
  while (Date.now() < deadline) {
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    for (const line of text.split('\n')) {
      if (!line.includes('"listening"')) continue;
      try {
        return JSON.parse(line);
      } catch {
        // partial line: read again
      }
    }
    if (exited) throw new Error(`process exited (${exited.code ?? exited.signal}) before listening:\n${text.slice(-3000)}`);
    await sleep(25);
  }
  throw new Error(`no "listening" line in ${logFile} after ${timeoutMs} ms`);
}

/**
 * Starts the service on an ephemeral loopback port (test/support/service-process.mjs, in its own process
 * group so that stop() ends the tools it runs too). `name` names the log file in bench/work/logs.
 * Returns { url, port, pid, startupMs, dataDir, logFile, stop() }.
 */
export async function startService({ name, dataDir, baseDir, args = [], fresh = true, timeoutMs = 30_000 }) {
  if (fresh) fs.rmSync(dataDir, { recursive: true, force: true });
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(WORK, 'logs', `${name}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  fs.rmSync(logFile, { force: true });
  // The bound port is read from the "listening" log line; a what-if run that silences info logs
  // gets a port chosen here instead, and readiness from /healthz.
  const quiet = /--log-level[= ](warn|error|fatal|silent)/.test(SERVICE_ARGS.join(' '));
  const svc = await startServiceProcess({
    cli: SERVICE_CLI,
    nodeArgs: NODE_ARGS,
    listen: `127.0.0.1:${quiet ? await freePort() : 0}`,
    dataDir,
    baseArtifacts: baseDir,
    args: [...args, ...SERVICE_ARGS],
    logFile,
    readiness: quiet ? 'healthz' : 'log',
    startTimeoutMs: timeoutMs,
    processGroup: true,
  });
  return {
    url: svc.url,
    port: svc.port,
    startupMs: svc.startupMs,
    pid: svc.pid,
    dataDir,
    logFile,
    stop: () => svc.stop('SIGTERM', 15_000),
  };
}

/** Starts the bare Fastify baseline server (bench/baseline/fastify-server.mjs). */
export async function startFastifyBaseline(name) {
  const logFile = path.join(WORK, 'logs', `${name}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  fs.rmSync(logFile, { force: true });
  const handle = start(process.execPath, [path.join(BENCH, 'baseline', 'fastify-server.mjs')], { cwd: REPO, stdout: logFile, stderr: logFile });
  const line = await waitForListening(logFile, handle);
  return { url: `http://127.0.0.1:${line.port}`, port: line.port, pid: handle.child.pid, handle, stop: () => stop(handle, 'SIGTERM', 5_000) };
}

/** One request; JSON bodies in and out. */
export async function api(url, { method = 'GET', json, headers = {} } = {}) {
  const h = { ...headers };
  let body;
  if (json !== undefined) {
    body = JSON.stringify(json);
    h['content-type'] = 'application/json';
  }
  const res = await request(url, { method, headers: h, body, dispatcher: agent, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const text = await res.body.text();
  let parsed = text;
  if (String(res.headers['content-type'] ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: res.statusCode, headers: res.headers, body: parsed };
}

/** POSTs a build request; throws unless 202. Returns the build id. */
export async function submitBuild(svc, buildRequest) {
  const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: buildRequest });
  if (res.status !== 202) throw new Error(`POST /api/v1/builds: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id;
}

/** Polls a build every `everyMs` until completed (returns the status) or failed/timeout (throws). */
export async function waitForBuild(svc, id, { everyMs = 10, timeoutMs = 300_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api(`${svc.url}/api/v1/builds/${id}`);
    if (res.status === 200 && res.body.state === 'completed') return res.body;
    if (res.status === 200 && res.body.state === 'failed') throw new Error(`build ${id} failed: ${res.body.error}`);
    if (res.status !== 200) throw new Error(`GET build ${id}: ${res.status}`);
    if (Date.now() > deadline) throw new Error(`build ${id} still ${res.body.state} after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

export async function deleteBuild(svc, id) {
  const res = await api(`${svc.url}/api/v1/builds/${id}`, { method: 'DELETE' });
  if (res.status !== 204) throw new Error(`DELETE build ${id}: ${res.status}`);
}

/** Parses Prometheus text into { 'name{labels}': value }. */
export async function metrics(svc) {
  const res = await api(`${svc.url}/metrics`);
  const out = {};
  for (const line of String(res.body).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

/** Builds the service has finished executing (completed + failed), from the duration histogram. */
export function buildsExecuted(m) {
  return (m['uod_build_duration_seconds_count{result="completed"}'] ?? 0) + (m['uod_build_duration_seconds_count{result="failed"}'] ?? 0);
}

export function closeClients() {
  return agent.close();
}
