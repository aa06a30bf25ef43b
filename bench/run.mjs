// Entry point of `make bench`: runs every figure (B1–B6) against baselines measured in the same run,
// prints one table and writes bench/results.json (rows) and bench/results-details.json (every run's
// raw numbers and the machine's state). See bench/README.md.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CONFIG, enabled, ONLY, QUICK } from './lib/config.mjs';
import { prepareBase } from './lib/fixtures.mjs';
import { BASE_DIR, BENCH, REPO, WORK } from './lib/paths.mjs';
import { installCleanup, killAll } from './lib/proc.mjs';
import { formatTable, publicRows, writeJson } from './lib/report.mjs';
import { closeClients, SERVICE_CLI, startService } from './lib/service.mjs';
import { b1, b6Scaling } from './suites/builds.mjs';
import { b2 } from './suites/cache-hit.mjs';
import { b3 } from './suites/artifacts.mjs';
import { b4 } from './suites/checkins.mjs';
import { b5 } from './suites/rss.mjs';
import { b6List } from './suites/list.mjs';

// Whatever happens, the whole run is bounded.
const DEADLINE_MS = (QUICK ? 15 : 40) * 60_000;

const started = Date.now();
const log = (msg) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

/** The repository's commit and whether src/ differs from it (the service measured may be built from either). */
function gitHead() {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' }).trim() !== '';
    return { commit: head, srcModified: dirty };
  } catch {
    return null;
  }
}

async function main() {
  installCleanup();
  const watchdog = setTimeout(() => {
    log(`run exceeded ${DEADLINE_MS / 60_000} minutes; stopping`);
    killAll();
    process.exit(3);
  }, DEADLINE_MS);
  watchdog.unref();

  if (!fs.existsSync(SERVICE_CLI)) throw new Error(`${SERVICE_CLI} is missing: run \`npm run build\` first`);
  fs.mkdirSync(WORK, { recursive: true });
  log(`${QUICK ? 'quick' : 'full'} run${ONLY.length ? ` of ${ONLY.join(',')}` : ''}; service ${path.relative(process.cwd(), SERVICE_CLI)}`);
  log('preparing base artifacts (kernel + random initramfs filler)');
  prepareBase([...new Set([30, 200, ...CONFIG.scalingSizesMb])]);

  const ctx = { details: {}, log, errors: {} };
  const rows = [];
  const loadBefore = os.loadavg();
  // A figure group that fails is reported as such; the others still run and are written.
  const suite = async (name, fn) => {
    try {
      rows.push(...(await fn()));
    } catch (err) {
      log(`${name} failed: ${err.stack ?? err}`);
      ctx.errors[name] = String(err.message ?? err);
      rows.push({ id: `${name}-error`, unit: 'error', value: null, baseline: null, ratio: null, goal: null, met: false, note: String(err.message ?? err).split('\n').filter(Boolean).slice(0, 2).join(' ').slice(0, 160) });
    }
  };

  // B1, B6 scaling and B3 share one service: B3 serves a 200 MB build made by it.
  if (enabled('B1') || enabled('B6') || enabled('B3')) {
    let svc = null;
    await suite('B1-B3-B6', async () => {
      svc = await startService({ name: 'main', dataDir: path.join(WORK, 'data-main'), baseDir: BASE_DIR });
      return [];
    });
    if (svc) {
      if (enabled('B1')) await suite('B1', () => b1(ctx, svc));
      if (enabled('B6')) await suite('B6-scaling', () => b6Scaling(ctx, svc));
      if (enabled('B3')) await suite('B3', () => b3(ctx, svc));
      await svc.stop();
      // Built artifacts are big and never reused; the base files and the B6 records are kept.
      fs.rmSync(svc.dataDir, { recursive: true, force: true });
    }
  }
  if (enabled('B2')) await suite('B2', () => b2(ctx));
  if (enabled('B4')) await suite('B4', () => b4(ctx));
  if (enabled('B5')) await suite('B5', () => b5(ctx));
  if (enabled('B6')) await suite('B6-list', () => b6List(ctx));
  await closeClients();

  const order = (id) => id.replace(/^B(\d).*/, '$1');
  rows.sort((a, b) => order(a.id) - order(b.id));
  const table = formatTable(rows);
  process.stdout.write(`\n${table}\n\n`);
  const missed = rows.filter((r) => r.met === false).map((r) => r.id);
  process.stdout.write(`${rows.filter((r) => r.met === true).length} goals met, ${missed.length} missed${missed.length ? `: ${missed.join(', ')}` : ''}; ` +
    `${QUICK ? 'quick' : 'full'} run in ${((Date.now() - started) / 60_000).toFixed(1)} min, load average ${loadBefore[0].toFixed(2)} → ${os.loadavg()[0].toFixed(2)}\n`);

  const partial = ONLY.length > 0;
  const resultsFile = partial ? path.join(WORK, 'results-partial.json') : path.join(BENCH, 'results.json');
  const detailsFile = partial ? path.join(WORK, 'results-details-partial.json') : path.join(BENCH, 'results-details.json');
  writeJson(resultsFile, publicRows(rows));
  writeJson(detailsFile, {
    date: new Date().toISOString(),
    mode: QUICK ? 'quick' : 'full',
    only: ONLY,
    service: { cli: SERVICE_CLI, repoHead: gitHead() },
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      memGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      node: process.version,
      loadAverageBefore: loadBefore,
      loadAverageAfter: os.loadavg(),
    },
    config: CONFIG,
    rows,
    errors: ctx.errors,
    runs: ctx.details,
  });
  log(`wrote ${path.relative(process.cwd(), resultsFile)} and ${path.relative(process.cwd(), detailsFile)}`);
  clearTimeout(watchdog);
  // Missed goals are results, not failures; a figure that could not be measured is a failure.
  return Object.keys(ctx.errors).length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err.stack ?? err}\n`);
    killAll();
    process.exit(1);
  },
);
