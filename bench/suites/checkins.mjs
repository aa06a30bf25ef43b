// B4: checkin PUTs (booted servers reporting their addresses) against a bare Fastify PUT route.
// 1000 ids are registered first; wrk (one thread, 16 connections) cycles PUTs over them for a fixed time.
// The latency goal is the throughput goal seen through Little's law: at a fixed number of connections,
// ≥ 0.7× the throughput is ≤ 1/0.7 ≈ 1.43× the mean latency; the p99 is held to the same bound.
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG } from '../lib/config.mjs';
import { BASE_DIR, WORK } from '../lib/paths.mjs';
import { cpuTimeMs } from '../lib/proc.mjs';
import { buildRequest as rawRequest, rawLoad } from '../lib/raw-http.mjs';
import { row } from '../lib/report.mjs';
import { startFastifyBaseline, startService } from '../lib/service.mjs';
import { median } from '../lib/stats.mjs';
import { runWrk } from '../lib/wrk.mjs';

const IDS = 1000;
const CONNECTIONS = 16;

export async function b4(ctx) {
  const svc = await startService({ name: 'b4', dataDir: path.join(WORK, 'data-b4'), baseDir: BASE_DIR });
  const base = await startFastifyBaseline('b4-fastify');
  const dir = path.join(WORK, 'b4');
  fs.mkdirSync(dir, { recursive: true });
  const paths = Array.from({ length: IDS }, (_, i) => `/api/v1/checkins/bench-node-${String(i).padStart(4, '0')}`);
  const pathsFile = path.join(dir, 'paths.txt');
  const bodyFile = path.join(dir, 'body.json');
  fs.writeFileSync(pathsFile, paths.join('\n') + '\n');
  fs.writeFileSync(bodyFile, JSON.stringify({ addresses: ['192.0.2.10', '198.51.100.7', '2001:db8::10'] }));
  try {
    const register = paths.map((p) => rawRequest({ method: 'POST', path: p, port: svc.port, headers: { 'Content-Type': 'application/json' }, body: '{"addresses":[]}' }));
    const reg = await rawLoad({ port: svc.port, requests: register, connections: 4, count: IDS });
    if (reg.statuses[204] !== IDS) throw new Error(`registering checkin ids: ${JSON.stringify(reg.statuses)}`);

    const opts = (url) => ({ url, connections: CONNECTIONS, method: 'PUT', bodyFile, pathsFile, headers: { 'Content-Type': 'application/json' } });
    for (const s of [svc, base]) await runWrk({ ...opts(s.url), seconds: 1 });
    const m = { service: [], baseline: [] };
    for (let i = 0; i < CONFIG.putRuns; i++) {
      for (const [name, s] of [['service', svc], ['baseline', base]]) {
        const cpu0 = cpuTimeMs(s.pid);
        const r = await runWrk({ ...opts(s.url), seconds: CONFIG.putSeconds });
        const cpuUs = ((cpuTimeMs(s.pid) - cpu0) * 1000) / r.requests;
        if (r.errors) throw new Error(`${name}: ${r.errors} failed PUTs ${JSON.stringify(r.raw)}`);
        m[name].push({ rps: r.requests / r.seconds, p50Ms: r.latencyUs.p50 / 1000, p99Ms: r.latencyUs.p99 / 1000, meanMs: r.latencyUs.mean / 1000, cpuUsPerRequest: cpuUs });
      }
      ctx.log(`B4 run ${i + 1}/${CONFIG.putRuns}: service ${m.service.at(-1).rps.toFixed(0)} req/s p99 ${m.service.at(-1).p99Ms.toFixed(2)} ms, ` +
        `baseline ${m.baseline.at(-1).rps.toFixed(0)} req/s p99 ${m.baseline.at(-1).p99Ms.toFixed(2)} ms`);
    }
    ctx.details.B4 = m;
    const med = (runs, key) => median(runs.map((r) => r[key]));
    return [
      row('B4-checkin-put-throughput', 'req/s', med(m.service, 'rps'), { baseline: med(m.baseline, 'rps'), goal: '>= 0.7', note: `wrk, ${CONNECTIONS} connections, PUTs over ${IDS} ids; server CPU ${med(m.service, 'cpuUsPerRequest').toFixed(0)} vs ${med(m.baseline, 'cpuUsPerRequest').toFixed(0)} µs/request` }),
      row('B4-checkin-put-p99', 'ms', med(m.service, 'p99Ms'), {
        baseline: med(m.baseline, 'p99Ms'), goal: '<= 1.43',
        note: `p50 ${med(m.service, 'p50Ms').toFixed(2)} vs ${med(m.baseline, 'p50Ms').toFixed(2)} ms (1.43 = 1/0.7)`,
      }),
    ];
  } finally {
    await Promise.all([svc.stop(), base.stop()]);
  }
}
