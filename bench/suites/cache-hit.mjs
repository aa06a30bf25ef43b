// B2: a build request the service already has. 100 identical POSTs arrive at once for a request it
// has never seen (singleflight: exactly one build must run), then 1000 sequential identical POSTs and
// bursts of 100 concurrent ones are timed against a bare Fastify route that answers 202.
// Latencies are per request, from the raw client (exact counts, one keep-alive socket per client).
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG } from '../lib/config.mjs';
import { buildRequest, fillerName } from '../lib/fixtures.mjs';
import { BASE_DIR, WORK } from '../lib/paths.mjs';
import { cpuTimeMs } from '../lib/proc.mjs';
import { buildRequest as rawRequest, rawLoad } from '../lib/raw-http.mjs';
import { row } from '../lib/report.mjs';
import { api, buildsExecuted, metrics, startFastifyBaseline, startService, waitForBuild } from '../lib/service.mjs';
import { median, percentile } from '../lib/stats.mjs';

function postOf(port, body) {
  return [rawRequest({ method: 'POST', path: '/api/v1/builds', port, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })];
}

function expectAll(result, status, what) {
  const other = Object.entries(result.statuses).filter(([s]) => Number(s) !== status);
  if (other.length) throw new Error(`${what}: expected only ${status}, got ${JSON.stringify(result.statuses)}`);
}

async function sequential(port, requests) {
  globalThis.gc?.();
  const r = await rawLoad({ port, requests, connections: 1, count: CONFIG.seqPosts });
  return r;
}

async function bursts(port, requests) {
  globalThis.gc?.();
  return rawLoad({ port, requests, connections: 100, count: 100 * CONFIG.burstRounds, mode: 'burst' });
}

export async function b2(ctx) {
  const svc = await startService({ name: 'b2', dataDir: path.join(WORK, 'data-b2'), baseDir: BASE_DIR });
  const base = await startFastifyBaseline('b2-fastify');
  try {
    const body = buildRequest({ initramfs: fillerName(30), cmdline: `console=ttyS0 uod.bench=cache-hit-${Date.now()}` });
    const svcReq = postOf(svc.port, body);
    const baseReq = postOf(base.port, body);

    // Singleflight: 100 identical POSTs at once for a request never seen before.
    ctx.log('B2: 100 concurrent identical POSTs of a new request');
    const first = await rawLoad({ port: svc.port, requests: svcReq, connections: 100, count: 100, mode: 'burst' });
    expectAll(first, 202, 'first burst');
    const list = await api(`${svc.url}/api/v1/builds`);
    if (list.body.length !== 1) throw new Error(`expected 1 build after the first burst, found ${list.body.length}`);
    await waitForBuild(svc, list.body[0].id, { everyMs: 20 });

    // Warm both servers' code paths before timing.
    for (const port of [svc.port, base.port]) await rawLoad({ port, requests: port === svc.port ? svcReq : baseReq, connections: 4, count: 2000 });

    const seq = { service: [], baseline: [] };
    const conc = { service: [], baseline: [] };
    for (let i = 0; i < CONFIG.latencyRuns; i++) {
      for (const [which, port, reqs, pid] of [['service', svc.port, svcReq, svc.pid], ['baseline', base.port, baseReq, base.pid]]) {
        let cpu0 = cpuTimeMs(pid);
        const s = await sequential(port, reqs);
        const seqCpu = ((cpuTimeMs(pid) - cpu0) * 1000) / s.latenciesUs.length;
        expectAll(s, 202, `${which} sequential`);
        seq[which].push({ p50: percentile(s.latenciesUs, 50), p99: percentile(s.latenciesUs, 99), max: percentile(s.latenciesUs, 100), elapsedMs: s.elapsedMs, cpuUsPerRequest: seqCpu });
        cpu0 = cpuTimeMs(pid);
        const c = await bursts(port, reqs);
        const burstCpu = ((cpuTimeMs(pid) - cpu0) * 1000) / c.latenciesUs.length;
        expectAll(c, 202, `${which} bursts`);
        conc[which].push({ p50: percentile(c.latenciesUs, 50), p99: percentile(c.latenciesUs, 99), max: percentile(c.latenciesUs, 100), elapsedMs: c.elapsedMs, cpuUsPerRequest: burstCpu });
      }
      ctx.log(`B2 run ${i + 1}/${CONFIG.latencyRuns}: sequential p99 ${seq.service.at(-1).p99.toFixed(0)} µs vs ${seq.baseline.at(-1).p99.toFixed(0)} µs; ` +
        `100-burst p99 ${conc.service.at(-1).p99.toFixed(0)} µs vs ${conc.baseline.at(-1).p99.toFixed(0)} µs`);
    }

    const m = await metrics(svc);
    const executed = buildsExecuted(m);
    const listed = (await api(`${svc.url}/api/v1/builds`)).body.length;
    const posts = 100 + 2000 + CONFIG.latencyRuns * (CONFIG.seqPosts + 100 * CONFIG.burstRounds);
    ctx.details.B2 = { sequential: seq, concurrent: conc, buildsExecuted: executed, buildsListed: listed, posts };

    const ms = (runs, key) => median(runs.map((r) => r[key])) / 1000;
    const cpu = (m, which) => median(m[which].map((r) => r.cpuUsPerRequest)).toFixed(0);
    return [
      row('B2-seq-1000-p99', 'ms', ms(seq.service, 'p99'), {
        baseline: ms(seq.baseline, 'p99'), goal: '<= 2',
        note: `1000 sequential identical POSTs; p50 ${ms(seq.service, 'p50').toFixed(3)} vs ${ms(seq.baseline, 'p50').toFixed(3)} ms; server CPU ${cpu(seq, 'service')} vs ${cpu(seq, 'baseline')} µs/request`,
      }),
      row('B2-conc-100-p99', 'ms', ms(conc.service, 'p99'), {
        baseline: ms(conc.baseline, 'p99'), goal: '<= 2',
        note: `bursts of 100 concurrent identical POSTs ×${CONFIG.burstRounds}; p50 ${ms(conc.service, 'p50').toFixed(3)} vs ${ms(conc.baseline, 'p50').toFixed(3)} ms; server CPU ${cpu(conc, 'service')} vs ${cpu(conc, 'baseline')} µs/request`,
      }),
      row('B2-builds-executed', 'builds', executed, { goal: '== 1', note: `${posts} identical POSTs; builds listed: ${listed}` }),
    ];
  } finally {
    await Promise.all([svc.stop(), base.stop()]);
    fs.rmSync(svc.dataDir, { recursive: true, force: true });
  }
}
