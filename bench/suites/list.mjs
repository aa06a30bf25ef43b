// B6 (second half): the build list with 10 000 builds and 10 000 checkins. Building 10 000 images is
// out of reach, so completed build records (the registry's build.json format, with small artifact files
// of the recorded sizes) are written into a fresh data directory before the service starts; the
// checkins are registered through the API. Then GET /api/v1/builds is timed, one request at a time.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { CONFIG } from '../lib/config.mjs';
import { buildRequest, fillerName, KERNEL_NAME } from '../lib/fixtures.mjs';
import { BASE_DIR, WORK } from '../lib/paths.mjs';
import { buildRequest as rawRequest, rawLoad } from '../lib/raw-http.mjs';
import { row } from '../lib/report.mjs';
import { api, SERVICE_CLI, startService } from '../lib/service.mjs';
import { median, percentile } from '../lib/stats.mjs';

const sha256 = (x) => createHash('sha256').update(x).digest('hex');

/** Writes `n` completed build records with their artifact files; returns the ids. */
async function writeBuildRecords(dataDir, n) {
  // The service's own normalization and id, so the records are exactly what it would have written.
  const dist = path.dirname(SERVICE_CLI);
  const { normalizeBuildRequest } = await import(pathToFileURL(path.join(dist, 'builds', 'request.js')).href);
  const { computeBuildId } = await import(pathToFileURL(path.join(dist, 'builds', 'build-id.js')).href);
  const bases = { kernelSha256: sha256(KERNEL_NAME), initramfsSha256: sha256(fillerName(200)) };
  const buildsDir = path.join(dataDir, 'builds');
  fs.mkdirSync(buildsDir, { recursive: true });
  const t0 = Date.parse('2025-01-01T00:00:00Z');
  const ids = [];
  for (let i = 0; i < n; i++) {
    const request = normalizeBuildRequest(buildRequest({ initramfs: fillerName(200), cmdline: `console=ttyS0 uod.bench=list-${i}`, tag: `node-${i}` }), { maxFiles: 1024 });
    const id = computeBuildId(request, bases);
    const dir = path.join(buildsDir, id);
    fs.mkdirSync(dir);
    const uki = Buffer.from(`uki ${i}\n`);
    const iso = Buffer.from(`iso ${i}\n`);
    fs.writeFileSync(path.join(dir, 'uki.efi'), uki);
    fs.writeFileSync(path.join(dir, 'boot.iso'), iso);
    const at = (s) => new Date(t0 + i * 60_000 + s * 1000).toISOString();
    const record = {
      id,
      state: 'completed',
      createdAt: at(0),
      startedAt: at(0.1),
      completedAt: at(3),
      request,
      bases,
      artifacts: {
        uki: { file: 'uki.efi', size: uki.length, sha256: sha256(uki) },
        iso: { file: 'boot.iso', size: iso.length, sha256: sha256(iso) },
      },
    };
    fs.writeFileSync(path.join(dir, 'build.json'), JSON.stringify(record));
    ids.push(id);
  }
  return ids;
}

/** Fresh records, or the ones a previous run wrote if the service's record format (its dist) is unchanged. */
async function prepareDataDir(ctx, dataDir, n) {
  const dist = path.dirname(SERVICE_CLI);
  const stamp = sha256(['builds/request.js', 'builds/build-id.js', 'builds/registry.js'].map((f) => fs.readFileSync(path.join(dist, f))).join('\0') + n);
  const stampFile = path.join(dataDir, 'bench-records.stamp');
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === stamp) {
    // Only the checkins (registered through the API in every run) and scratch space are reset.
    for (const f of fs.readdirSync(dataDir)) if (f !== 'builds' && f !== 'bench-records.stamp') fs.rmSync(path.join(dataDir, f), { recursive: true, force: true });
    ctx.log(`B6: reusing ${n} build records from an earlier run`);
    return;
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
  ctx.log(`B6: writing ${n} build records`);
  await writeBuildRecords(dataDir, n);
  fs.writeFileSync(stampFile, stamp);
}

export async function b6List(ctx) {
  const dataDir = path.join(WORK, 'data-b6-list');
  await prepareDataDir(ctx, dataDir, CONFIG.listBuilds);
  const svc = await startService({ name: 'b6-list', dataDir, baseDir: BASE_DIR, fresh: false, timeoutMs: 300_000 });
  try {
    ctx.log(`B6: service loaded ${CONFIG.listBuilds} builds in ${(svc.startupMs / 1000).toFixed(1)} s; registering ${CONFIG.listCheckins} checkins`);
    const posts = Array.from({ length: CONFIG.listCheckins }, (_, i) =>
      rawRequest({ method: 'POST', path: `/api/v1/checkins/list-node-${i}`, port: svc.port, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] }) }));
    const reg = await rawLoad({ port: svc.port, requests: posts, connections: 16, count: posts.length });
    if (reg.statuses[204] !== posts.length) throw new Error(`checkin POSTs: ${JSON.stringify(reg.statuses)}`);
    const checkinRate = posts.length / (reg.elapsedMs / 1000);

    const listed = await api(`${svc.url}/api/v1/builds`);
    if (listed.status !== 200 || listed.body.length !== CONFIG.listBuilds) throw new Error(`GET /api/v1/builds listed ${listed.body.length} builds`);
    const bytes = Number(listed.headers['content-length'] ?? 0);

    const get = [rawRequest({ method: 'GET', path: '/api/v1/builds', port: svc.port })];
    await rawLoad({ port: svc.port, requests: get, connections: 1, count: 5 });
    const runs = [];
    for (let r = 0; r < CONFIG.listRuns; r++) {
      globalThis.gc?.();
      const res = await rawLoad({ port: svc.port, requests: get, connections: 1, count: CONFIG.listGets });
      if (res.statuses[200] !== CONFIG.listGets) throw new Error(`list: ${JSON.stringify(res.statuses)}`);
      runs.push({ p50Ms: percentile(res.latenciesUs, 50) / 1000, p99Ms: percentile(res.latenciesUs, 99) / 1000, maxMs: percentile(res.latenciesUs, 100) / 1000 });
      ctx.log(`B6 list run ${r + 1}/${CONFIG.listRuns}: p50 ${runs.at(-1).p50Ms.toFixed(1)} ms, p99 ${runs.at(-1).p99Ms.toFixed(1)} ms`);
    }
    ctx.details.B6list = { startupMs: svc.startupMs, checkinPostsPerSecond: checkinRate, responseBytes: bytes, runs };
    const med = (key) => median(runs.map((x) => x[key]));
    return [
      row('B6-list-10k-p99', 'ms', med('p99Ms'), {
        goal: '<= 50',
        note: `GET /api/v1/builds with ${CONFIG.listBuilds} builds + ${CONFIG.listCheckins} checkins (${(bytes / 1e6).toFixed(1)} MB); p50 ${med('p50Ms').toFixed(1)} ms`,
      }),
      row('B6-startup-10k', 's', svc.startupMs / 1000, { note: `service start to listening with ${CONFIG.listBuilds} build records` }),
      row('B6-checkin-post-10k', 'req/s', checkinRate, { note: `registering ${CONFIG.listCheckins} checkins, 16 connections` }),
    ];
  } finally {
    await svc.stop();
  }
}
