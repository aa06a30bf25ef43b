// GET /metrics after a known set of requests: every family's exact values per label set, the help
// texts and types operators' dashboards rely on, and Node's process metrics.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import pino from 'pino';
import { request } from 'undici';
import { ImagePipeline, type BuildPipeline, type PipelineJob } from '../../src/builds/pipeline.js';
import { loadConfig } from '../../src/config.js';
import { startService, type RunningService } from '../../src/service.js';
import { api, BASE_ARTIFACTS, tempDir, tinyRequest } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { checkEveryResponse } from '../support/openapi.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

requireBaseArtifacts();

/** The real pipeline, except that a request whose cmdline says so fails as a tool failure would. */
class FailingOnRequestPipeline implements BuildPipeline {
  private readonly real = new ImagePipeline();
  async run(job: PipelineJob) {
    if (job.request.cmdline.includes('metrics-fail')) throw new Error('objcopy: simulated tool failure');
    return this.real.run(job);
  }
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  help?: string;
  type?: string;
  samples: Sample[];
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;
const SUFFIXES = ['_bucket', '_sum', '_count'];

/** Parses the Prometheus text format (0.0.4) into families by name; throws on a line it cannot read. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2] as string);
      if (meta[1] === 'HELP') f.help = (meta[3] as string).replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      else f.type = meta[3];
      continue;
    }
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new Error(`unreadable metrics line: ${line}`);
    const [, name, rawLabels = '', rawValue] = m as unknown as [string, string, string | undefined, string];
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < rawLabels.length) {
      const l = LABEL.exec(rawLabels);
      if (!l) throw new Error(`unreadable labels: ${line}`);
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    // Prometheus reads floats as Go's ParseFloat does: NaN in any case (prom-client writes "Nan").
    const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : /^nan$/i.test(rawValue) ? NaN : Number(rawValue);
    if (Number.isNaN(value) && !/^nan$/i.test(rawValue)) throw new Error(`unreadable value: ${line}`);
    const base = SUFFIXES.find((s) => name.endsWith(s) && families.has(name.slice(0, -s.length)));
    family(base ? name.slice(0, -base.length) : name).samples.push({ name, labels, value });
  }
  return families;
}

/** `{labels as name=value, sorted}` → value, for one sample name of a family. */
function valuesOf(families: Map<string, Family>, family: string, sample = family): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of families.get(family)?.samples ?? []) {
    if (s.name !== sample) continue;
    const key = Object.keys(s.labels).sort().map((k) => `${k}=${s.labels[k]}`).join(',');
    out[key] = s.value;
  }
  return out;
}

describe('GET /metrics', () => {
  let url: string;
  let service: RunningService;
  let dataDir: string;
  let okId: string;
  let failId: string;
  let isoSize: number;
  let started: number;
  let finished: number;
  /** Status code → how many GET /api/v1/builds/:id polls answered it. */
  const polls: Record<number, number> = {};
  let scrape: { status: number; contentType: string; text: string };
  let families: Map<string, Family>;

  async function pollUntilDone(id: string): Promise<any> {
    for (;;) {
      const res = await api(`${url}/api/v1/builds/${id}`);
      polls[res.status] = (polls[res.status] ?? 0) + 1;
      if (res.body.state === 'completed' || res.body.state === 'failed') return res.body;
      if (Date.now() - started > 120_000) throw new Error(`build ${id} still ${res.body.state}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function send(method: string, p: string, headers: Record<string, string> = {}): Promise<number> {
    const res = await request(`${url}${p}`, { method: method as 'GET', headers });
    await res.body.arrayBuffer();
    return res.statusCode;
  }

  beforeAll(async () => {
    dataDir = tempDir('data');
    const config = loadConfig(['--listen', '127.0.0.1:0', '--data-dir', dataDir, '--base-artifacts', BASE_ARTIFACTS], {});
    service = await startService(config, { logger: pino({ level: 'silent' }), pipeline: new FailingOnRequestPipeline() });
    url = `http://${service.addresses.http}`;
    started = Date.now();

    // Checkins: two registered, one updated twice, one PUT for an id never registered, one deleted.
    const checkin = (method: string, id: string, addresses: string[]) => api(`${url}/api/v1/checkins/${id}`, { method, json: { addresses } });
    expect((await checkin('POST', 'node-a', [])).status).toBe(204);
    expect((await checkin('POST', 'node-b', [])).status).toBe(204);
    expect((await checkin('PUT', 'node-a', ['192.0.2.10'])).status).toBe(204);
    expect((await checkin('PUT', 'node-a', ['192.0.2.10', '2001:db8::10'])).status).toBe(204);
    expect((await checkin('PUT', 'never-registered', ['192.0.2.11'])).status).toBe(404);
    expect((await api(`${url}/api/v1/checkins/node-b`, { method: 'DELETE' })).status).toBe(204);

    // Builds: one that completes (submitted twice: one build), one that fails, one invalid request.
    const post = (body: unknown) => api(`${url}/api/v1/builds`, { method: 'POST', json: body });
    const ok = await post(tinyRequest({ cmdline: 'console=ttyS0 metrics-ok' }));
    expect(ok.status).toBe(202);
    okId = ok.body.id;
    expect((await post(tinyRequest({ cmdline: 'console=ttyS0 metrics-ok' }))).body.id).toBe(okId);
    const bad = await post(tinyRequest({ cmdline: 'console=ttyS0 metrics-fail' }));
    expect(bad.status).toBe(202);
    failId = bad.body.id;
    expect((await post(tinyRequest({ extra: 1 }))).status).toBe(400);
    expect((await pollUntilDone(okId)).state).toBe('completed');
    expect((await pollUntilDone(failId)).state).toBe('failed');
    expect((await api(`${url}/api/v1/builds`)).status).toBe(200);
    finished = Date.now();

    // Artifacts: HEAD, a full GET, two Range reads, a 416, a 304, two 404s and a 405.
    isoSize = fs.statSync(path.join(dataDir, 'builds', okId, 'boot.iso')).size;
    const uki = `/artifacts/${okId}/uki.efi`;
    const missing = `/artifacts/${'0'.repeat(64)}/uki.efi`;
    expect(await send('HEAD', uki)).toBe(200);
    expect(await send('GET', `/artifacts/${okId}/boot.iso`)).toBe(200);
    expect(await send('GET', uki, { range: 'bytes=0-99' })).toBe(206);
    expect(await send('GET', uki, { range: 'bytes=-512' })).toBe(206);
    expect(await send('GET', uki, { range: 'bytes=999999999-' })).toBe(416);
    const etag = (await request(`${url}${uki}`, { method: 'HEAD' })).headers.etag as string;
    expect(await send('GET', uki, { 'if-none-match': etag })).toBe(304);
    expect(await send('GET', missing)).toBe(404);
    expect(await send('HEAD', missing)).toBe(404);
    expect(await send('DELETE', uki)).toBe(405);

    // The rest of the API: liveness, an unknown route, and a first scrape (counted in the second).
    expect(await send('GET', '/healthz')).toBe(200);
    expect(await send('GET', '/no/such/route')).toBe(404);
    expect(await send('GET', '/metrics')).toBe(200);

    const res = await request(`${url}/metrics`);
    scrape = { status: res.statusCode, contentType: String(res.headers['content-type']), text: await res.body.text() };
    families = parseExposition(scrape.text);
  });
  afterAll(() => service?.close());

  test('answers Prometheus text format 0.0.4', () => {
    expect(scrape.status).toBe(200);
    expect(scrape.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    // one line per comment or sample, each ended by a newline, as the service has always written it
    expect(scrape.text.endsWith('\n')).toBe(true);
    expect(scrape.text.split('\n').slice(0, -1).filter((line) => line === '')).toEqual([]);
  });

  test('every family keeps its name, type and help text', () => {
    const meta = (name: string) => ({ help: families.get(name)?.help, type: families.get(name)?.type });
    expect(meta('uod_builds')).toEqual({ type: 'gauge', help: 'Builds known to the service, by state.' });
    expect(meta('uod_build_queue_depth')).toEqual({ type: 'gauge', help: 'Builds waiting for a build slot.' });
    expect(meta('uod_builds_running')).toEqual({ type: 'gauge', help: 'Builds executing now.' });
    expect(meta('uod_checkins')).toEqual({ type: 'gauge', help: 'Registered checkin ids.' });
    expect(meta('uod_build_duration_seconds')).toEqual({ type: 'histogram', help: 'Wall time of finished builds.' });
    expect(meta('uod_artifact_bytes_served_total')).toEqual({ type: 'counter', help: 'Artifact body bytes written to clients.' });
    expect(meta('uod_http_requests_total')).toEqual({ type: 'counter', help: 'HTTP requests answered, by route and status.' });
  });

  test('gauges: builds by state, queue, running builds, checkins', () => {
    expect(valuesOf(families, 'uod_builds')).toEqual({ 'state=pending': 0, 'state=running': 0, 'state=completed': 1, 'state=failed': 1 });
    expect(valuesOf(families, 'uod_build_queue_depth')).toEqual({ '': 0 });
    expect(valuesOf(families, 'uod_builds_running')).toEqual({ '': 0 });
    expect(valuesOf(families, 'uod_checkins')).toEqual({ '': 1 });
  });

  test('build duration histogram: one completed and one failed build, each in the buckets its time falls in', () => {
    const f = 'uod_build_duration_seconds';
    expect(valuesOf(families, f, `${f}_count`)).toEqual({ 'result=completed': 1, 'result=failed': 1 });
    const sums = valuesOf(families, f, `${f}_sum`);
    expect(Object.keys(sums).sort()).toEqual(['result=completed', 'result=failed']);
    const buckets = valuesOf(families, f, `${f}_bucket`);
    for (const result of ['completed', 'failed']) {
      const seconds = sums[`result=${result}`] as number;
      expect(seconds).toBeGreaterThan(0);
      expect(seconds).toBeLessThanOrEqual((finished - started) / 1000);
      const expected: Record<string, number> = {};
      for (const le of [1, 2, 5, 10, 20, 30, 60, 120, 300, 600]) expected[`le=${le},result=${result}`] = seconds <= le ? 1 : 0;
      expected[`le=+Inf,result=${result}`] = 1;
      const got = Object.fromEntries(Object.entries(buckets).filter(([k]) => k.endsWith(`result=${result}`)));
      expect(got).toEqual(expected);
    }
  });

  test('artifact bytes served, per file', () => {
    // the whole ISO once; 100 + 512 bytes of the UKI (HEAD, 304, 416 and 404 send no file bytes)
    expect(valuesOf(families, 'uod_artifact_bytes_served_total')).toEqual({ 'file=boot.iso': isoSize, 'file=uki.efi': 612 });
  });

  test('HTTP requests, per method, route and status', () => {
    const art = 'route=/artifacts/:id/:file';
    const req = (method: string, route: string, status: number) => `method=${method},route=${route},status=${status}`;
    expect(valuesOf(families, 'uod_http_requests_total')).toEqual({
      [req('POST', '/api/v1/checkins/:id', 204)]: 2,
      [req('PUT', '/api/v1/checkins/:id', 204)]: 2,
      [req('PUT', '/api/v1/checkins/:id', 404)]: 1,
      [req('DELETE', '/api/v1/checkins/:id', 204)]: 1,
      [req('POST', '/api/v1/builds', 202)]: 3,
      [req('POST', '/api/v1/builds', 400)]: 1,
      [req('GET', '/api/v1/builds/:id', 200)]: polls[200],
      [req('GET', '/api/v1/builds', 200)]: 1,
      [`method=HEAD,${art},status=200`]: 2,
      [`method=GET,${art},status=200`]: 1,
      [`method=GET,${art},status=206`]: 2,
      [`method=GET,${art},status=416`]: 1,
      [`method=GET,${art},status=304`]: 1,
      [`method=GET,${art},status=404`]: 1,
      [`method=HEAD,${art},status=404`]: 1,
      [`method=DELETE,${art},status=405`]: 1,
      [req('GET', '/healthz', 200)]: 1,
      [req('GET', 'unmatched', 404)]: 1,
      [req('GET', '/metrics', 200)]: 1,
    });
    expect(Object.keys(polls)).toEqual(['200']);
  });

  test("Node's default process metrics: memory, CPU, event-loop lag, GC", () => {
    // The service runs in this test process, so its figures are this process's.
    const meta = (name: string) => families.get(name)?.type;
    expect(meta('process_resident_memory_bytes')).toBe('gauge');
    expect(meta('process_cpu_seconds_total')).toBe('counter');
    expect(meta('nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(meta('nodejs_gc_duration_seconds')).toBe('histogram');

    const rss = valuesOf(families, 'process_resident_memory_bytes')[''] as number;
    const rssNow = process.memoryUsage().rss;
    expect(rss).toBeGreaterThan(rssNow / 2);
    expect(rss).toBeLessThan(rssNow * 2);
    const cpu = valuesOf(families, 'process_cpu_seconds_total')[''] as number;
    const usage = process.cpuUsage();
    expect(cpu).toBeGreaterThan(0);
    expect(cpu).toBeLessThanOrEqual((usage.user + usage.system) / 1e6);
    const lag = valuesOf(families, 'nodejs_eventloop_lag_seconds')[''] as number;
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(10);
    // Reading a 10 MB ISO and a few hundred responses take at least one collection; which kinds V8
    // chooses (scavenge, incremental marking, mark-compact) varies from run to run.
    const gcCounts = valuesOf(families, 'nodejs_gc_duration_seconds', 'nodejs_gc_duration_seconds_count');
    expect(Object.keys(gcCounts).every((k) => ['kind=minor', 'kind=major', 'kind=incremental', 'kind=weakcb'].includes(k))).toBe(true);
    expect(Object.values(gcCounts).reduce((a, b) => a + (b as number), 0)).toBeGreaterThanOrEqual(1);
  });

  test('a second service in the same process keeps its own counts', async () => {
    const other = await startService(
      loadConfig(['--listen', '127.0.0.1:0', '--data-dir', tempDir('data'), '--base-artifacts', BASE_ARTIFACTS], {}),
      { logger: pino({ level: 'silent' }) },
    );
    try {
      const otherUrl = `http://${other.addresses.http}`;
      expect((await api(`${otherUrl}/healthz`)).status).toBe(200);
      expect((await api(`${otherUrl}/metrics`)).status).toBe(200);
      const mine = parseExposition((await api(`${otherUrl}/metrics`)).text);
      expect(valuesOf(mine, 'uod_http_requests_total')).toEqual({
        'method=GET,route=/healthz,status=200': 1,
        'method=GET,route=/metrics,status=200': 1,
      });
      expect(valuesOf(mine, 'uod_builds')).toEqual({ 'state=pending': 0, 'state=running': 0, 'state=completed': 0, 'state=failed': 0 });
      expect(mine.get('process_resident_memory_bytes')?.type).toBe('gauge');
      // and the first service's figures did not move
      const again = parseExposition((await api(`${url}/metrics`)).text);
      expect(valuesOf(again, 'uod_builds')).toEqual(valuesOf(families, 'uod_builds'));
      expect(valuesOf(again, 'uod_artifact_bytes_served_total')).toEqual({ 'file=boot.iso': isoSize, 'file=uki.efi': 612 });
    } finally {
      await other.close();
    }
  });
});
