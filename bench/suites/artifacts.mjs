// B3: serving a 200 MB ISO the service built, against nginx (sendfile) serving the very same file at the
// same URL. Full GETs and random Range reads use wrk (one thread); HEAD uses the raw client (wrk cannot
// do HEAD). Runs alternate between the two servers; the file is in the page cache for both.
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG } from '../lib/config.mjs';
import { startNginx } from '../lib/nginx.mjs';
import { cpuTimeMs } from '../lib/proc.mjs';
import { buildRequest as rawRequest, rawLoad } from '../lib/raw-http.mjs';
import { row } from '../lib/report.mjs';
import { median } from '../lib/stats.mjs';
import { runWrk } from '../lib/wrk.mjs';
import { timeServiceBuild } from './builds.mjs';

const CHUNK = 256 * 1024;

/** Both servers then read the file from the page cache. */
function warmPageCache(file) {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1024 * 1024);
  try {
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    fs.closeSync(fd);
  }
}

export async function b3(ctx, svc) {
  ctx.log('B3: building the 200 MB ISO to serve');
  const { id } = await timeServiceBuild(svc, 200, { remove: false });
  const isoPath = path.join(svc.dataDir, 'builds', id, 'boot.iso');
  const size = fs.statSync(isoPath).size;
  warmPageCache(isoPath);
  const urlPath = `/artifacts/${id}/boot.iso`;
  const nginx = await startNginx({ buildsDir: path.join(svc.dataDir, 'builds'), workers: process.env.BENCH_NGINX_WORKERS || 'auto' });
  const servers = [
    ['service', svc.url, svc.port, svc.pid],
    ['nginx', nginx.url, nginx.port, nginx.pid],
  ];
  const m = { full: { service: [], nginx: [] }, range: { service: [], nginx: [] }, head: { service: [], nginx: [] } };
  try {
    // Same bytes, same answers: a Range read and a HEAD from each must agree.
    for (const [name, url] of servers) {
      const r = await fetch(`${url}${urlPath}`, { headers: { Range: 'bytes=1000-1999' } });
      const got = Buffer.from(await r.arrayBuffer());
      if (r.status !== 206 || got.length !== 1000) throw new Error(`${name}: Range read gave ${r.status} with ${got.length} bytes`);
      const h = await fetch(`${url}${urlPath}`, { method: 'HEAD' });
      if (h.status !== 200 || Number(h.headers.get('content-length')) !== size) throw new Error(`${name}: HEAD gave ${h.status}, length ${h.headers.get('content-length')}`);
    }
    // Warm-up: a short pass of each pattern on each server.
    for (const [, url] of servers) {
      await runWrk({ url: url + urlPath, connections: 16, seconds: 1 });
      await runWrk({ url: url + urlPath, connections: 8, count: 500, range: { size, chunk: CHUNK, align: 2048 } });
    }

    for (let i = 0; i < CONFIG.fullGetRuns; i++) {
      for (const [name, url, , pid] of servers) {
        const cpu0 = cpuTimeMs(pid);
        const r = await runWrk({ url: url + urlPath, connections: 16, seconds: CONFIG.fullGetSeconds });
        const cpuMsPerGb = (cpuTimeMs(pid) - cpu0) / (r.bytes / 1e9);
        if (r.errors) throw new Error(`${name}: ${r.errors} errors in full GETs ${JSON.stringify(r.raw)}`);
        m.full[name].push({ gbps: r.bytes / r.seconds / 1e9, requests: r.requests, seconds: r.seconds, cpuMsPerGb });
      }
      ctx.log(`B3 full GET run ${i + 1}: service ${m.full.service.at(-1).gbps.toFixed(2)} GB/s, nginx ${m.full.nginx.at(-1).gbps.toFixed(2)} GB/s`);
    }
    for (let i = 0; i < CONFIG.rangeRuns; i++) {
      for (const [name, url, , pid] of servers) {
        const cpu0 = cpuTimeMs(pid);
        const r = await runWrk({ url: url + urlPath, connections: 8, count: CONFIG.rangeReads, seed: i + 1, range: { size, chunk: CHUNK, align: 2048 } });
        const cpuUs = ((cpuTimeMs(pid) - cpu0) * 1000) / r.raw.requests;
        if (r.errors) throw new Error(`${name}: ${r.errors} errors in Range reads ${JSON.stringify(r.raw)}`);
        // Each answer must have carried one 256 KiB body, not the whole file.
        const perResponse = r.raw.bytes / r.raw.requests;
        if (perResponse < CHUNK || perResponse > CHUNK + 4096) throw new Error(`${name}: ${perResponse} bytes per Range response`);
        m.range[name].push({ rps: r.requests / r.seconds, seconds: r.seconds, p99Us: r.latencyUs.p99, cpuUsPerRequest: cpuUs });
      }
      ctx.log(`B3 range run ${i + 1}: service ${m.range.service.at(-1).rps.toFixed(0)} req/s, nginx ${m.range.nginx.at(-1).rps.toFixed(0)} req/s`);
    }
    for (let i = 0; i < CONFIG.headRuns; i++) {
      for (const [name, , port, pid] of servers) {
        globalThis.gc?.();
        const requests = [rawRequest({ method: 'HEAD', path: urlPath, port })];
        const cpu0 = cpuTimeMs(pid);
        const r = await rawLoad({ port, requests, connections: 8, count: CONFIG.headRequests, isHead: true });
        const cpuUs = ((cpuTimeMs(pid) - cpu0) * 1000) / CONFIG.headRequests;
        if (r.statuses[200] !== CONFIG.headRequests) throw new Error(`${name}: HEAD statuses ${JSON.stringify(r.statuses)}`);
        m.head[name].push({ rps: CONFIG.headRequests / (r.elapsedMs / 1000), cpuUsPerRequest: cpuUs });
      }
      ctx.log(`B3 HEAD run ${i + 1}: service ${m.head.service.at(-1).rps.toFixed(0)} req/s, nginx ${m.head.nginx.at(-1).rps.toFixed(0)} req/s`);
    }
  } finally {
    await nginx.stop();
  }
  ctx.details.B3 = { isoBytes: size, ...m };

  const med = (runs, key) => median(runs.map((r) => r[key]));
  const rangeGb = (rps) => (rps * CHUNK) / 1e9;
  const cpu = (group, key) => `${med(group.service, key).toFixed(0)} vs ${med(group.nginx, key).toFixed(0)}`;
  return [
    row('B3-full-get-16c', 'GB/s', med(m.full.service, 'gbps'), {
      baseline: med(m.full.nginx, 'gbps'), goal: '>= 0.8',
      note: `16 connections × full GETs of the ${(size / 1e6).toFixed(0)} MB ISO; server CPU ${cpu(m.full, 'cpuMsPerGb')} ms/GB`,
    }),
    row('B3-range-256k-8c', 'req/s', med(m.range.service, 'rps'), {
      baseline: med(m.range.nginx, 'rps'), goal: '>= 0.8',
      note: `${CONFIG.rangeReads} random 256 KiB Range reads, 8 connections; ${rangeGb(med(m.range.service, 'rps')).toFixed(2)} vs ${rangeGb(med(m.range.nginx, 'rps')).toFixed(2)} GB/s; server CPU ${cpu(m.range, 'cpuUsPerRequest')} µs/request`,
    }),
    row('B3-head-8c', 'req/s', med(m.head.service, 'rps'), {
      baseline: med(m.head.nginx, 'rps'), goal: '>= 0.8',
      note: `${CONFIG.headRequests} HEADs, 8 connections (raw client); server CPU ${cpu(m.head, 'cpuUsPerRequest')} µs/request`,
    }),
  ];
}
