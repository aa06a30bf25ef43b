// B1 (cold build against a hand-written script and the disk floor) and B6's build-time scaling.
// A cold build is one the service has not seen: each run changes the cmdline, so the build id is new.
// Time is measured by the client from the POST to the first poll that sees "completed" (10 ms polls),
// the figure an orchestrator waits for; the service's own record (createdAt → completedAt) is kept too.
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG } from '../lib/config.mjs';
import { buildRequest, fillerName, KERNEL_NAME, writeOverlayTree } from '../lib/fixtures.mjs';
import { BASE_DIR, BENCH, WORK } from '../lib/paths.mjs';
import { runOk, settleDisk } from '../lib/proc.mjs';
import { row } from '../lib/report.mjs';
import { deleteBuild, SERVICE_CLI, startService, submitBuild, waitForBuild } from '../lib/service.mjs';
import { linearFit, median } from '../lib/stats.mjs';

const SCRIPT = path.join(BENCH, 'baseline-build.sh');
const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;

let nonce = 0;
function cmdline(mb) {
  return `console=ttyS0 uod.bench=${mb}M-${process.pid}-${Date.now()}-${nonce++}`;
}

/** One cold build through the service; returns { s, serverS, id }. Keeps the build unless `remove`. */
export async function timeServiceBuild(svc, mb, { remove = true } = {}) {
  const req = buildRequest({ initramfs: fillerName(mb), cmdline: cmdline(mb) });
  const t0 = process.hrtime.bigint();
  const id = await submitBuild(svc, req);
  const status = await waitForBuild(svc, id, { everyMs: 10 });
  const s = seconds(t0);
  const serverS = (Date.parse(status.completedAt) - Date.parse(status.createdAt)) / 1000;
  if (remove) await deleteBuild(svc, id);
  return { s, serverS, id };
}

async function timeScript(mb, overlayTree, outDir) {
  fs.rmSync(outDir, { recursive: true, force: true });
  const r = await runOk(SCRIPT, [path.join(BASE_DIR, KERNEL_NAME), path.join(BASE_DIR, fillerName(mb)), cmdline(mb), overlayTree, outDir], { timeoutMs: 300_000 });
  fs.rmSync(outDir, { recursive: true, force: true });
  return r.ms / 1000;
}

/** The disk floor: copying bytes equal to the outputs (a UKI and an ISO the service made) and fsyncing them. */
async function timeFloor(srcDir, outDir) {
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  const [u, i, u2, i2] = [path.join(srcDir, 'uki.efi'), path.join(srcDir, 'boot.iso'), path.join(outDir, 'uki.efi'), path.join(outDir, 'boot.iso')];
  const r = await runOk('bash', ['-c', 'cp "$1" "$3" && cp "$2" "$4" && sync "$3" "$4"', 'floor', u, i, u2, i2], { timeoutMs: 300_000 });
  fs.rmSync(outDir, { recursive: true, force: true });
  return r.ms / 1000;
}

/**
 * Times `runs` cold builds of each size on `svc` and on each of `others` (further service instances,
 * e.g. another configuration); with `baselines`, the script and the floor too. Sizes and measurements
 * go round-robin (every run of every size, then the next run), so that drift in the machine's load
 * reaches all of them alike. Returns { [mb]: { service: [s], server: [s], script, floor, [other]: [s] } }.
 */
export async function measureBuilds(ctx, svc, sizesMb, { runs, baselines, others = {} }) {
  const overlayTree = writeOverlayTree(path.join(WORK, 'overlay-tree'));
  const out = {};
  const floorSrc = {};
  for (const mb of sizesMb) {
    out[mb] = { service: [], server: [], script: [], floor: [], ...Object.fromEntries(Object.keys(others).map((k) => [k, []])) };
    // Warm-up (not counted): the service hashes the new base once, every input reaches the page
    // cache, and its outputs become the floor's source bytes.
    ctx.log(`build ${mb} MB: warm-up`);
    const warm = await timeServiceBuild(svc, mb, { remove: false });
    floorSrc[mb] = path.join(WORK, `floor-src-${mb}`);
    fs.rmSync(floorSrc[mb], { recursive: true, force: true });
    fs.mkdirSync(floorSrc[mb], { recursive: true });
    for (const f of ['uki.efi', 'boot.iso']) fs.copyFileSync(path.join(svc.dataDir, 'builds', warm.id, f), path.join(floorSrc[mb], f));
    await deleteBuild(svc, warm.id);
    for (const other of Object.values(others)) await timeServiceBuild(other, mb);
    if (baselines) await timeScript(mb, overlayTree, path.join(WORK, 'script-out'));
  }
  await settleDisk();

  for (let i = 0; i < runs; i++) {
    for (const mb of sizesMb) {
      const m = out[mb];
      const s = await timeServiceBuild(svc, mb);
      m.service.push(s.s);
      m.server.push(s.serverS);
      await settleDisk();
      for (const [name, other] of Object.entries(others)) {
        m[name].push((await timeServiceBuild(other, mb)).s);
        await settleDisk();
      }
      if (baselines) {
        m.script.push(await timeScript(mb, overlayTree, path.join(WORK, 'script-out')));
        await settleDisk();
        m.floor.push(await timeFloor(floorSrc[mb], path.join(WORK, 'floor-out')));
        await settleDisk();
      }
      ctx.log(`build ${mb} MB run ${i + 1}/${runs}: service ${s.s.toFixed(3)} s` +
        Object.keys(others).map((k) => `, ${k} ${m[k].at(-1).toFixed(3)} s`).join('') +
        (baselines ? `, script ${m.script.at(-1).toFixed(3)} s, floor ${m.floor.at(-1).toFixed(3)} s` : ''));
    }
  }
  for (const dir of Object.values(floorSrc)) fs.rmSync(dir, { recursive: true, force: true });
  return out;
}

/** The UKI writers the service offers and its default, from its --help; null if it has no choice. */
async function ukiWriters() {
  const r = await runOk(process.execPath, [SERVICE_CLI, 'serve', '--help'], { timeoutMs: 30_000 });
  const m = /--uki-writer\s+(\S+)[^\n]*\[default: (\w+)\]/.exec(r.stdout);
  return m ? { all: m[1].split('|'), dflt: m[2] } : null;
}

export async function b1(ctx, svc) {
  const sizes = [30, 200];
  // When UKIs can be written by objcopy or in process, the writer not used by default is timed too
  // (informational rows), so that one run shows what the choice costs.
  const writers = await ukiWriters();
  const others = {};
  for (const w of writers?.all.filter((x) => x !== writers.dflt) ?? []) {
    others[`${w}-writer`] = await startService({ name: `main-${w}`, dataDir: path.join(WORK, `data-main-${w}`), baseDir: BASE_DIR, args: ['--uki-writer', w] });
  }
  // Secure Boot: the same builds signed (sbsign, and the ISO whose EFI image is the signed UKI).
  const key = path.join(WORK, 'secure-boot.key');
  const cert = path.join(WORK, 'secure-boot.pem');
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=uki-on-demand bench', '-keyout', key, '-out', cert]);
  others.signed = await startService({ name: 'main-signed', dataDir: path.join(WORK, 'data-main-signed'), baseDir: BASE_DIR, args: ['--secure-boot-key', key, '--secure-boot-cert', cert] });
  let m;
  try {
    m = await measureBuilds(ctx, svc, sizes, { runs: CONFIG.buildRuns, baselines: true, others });
  } finally {
    for (const o of Object.values(others)) {
      await o.stop();
      fs.rmSync(o.dataDir, { recursive: true, force: true });
    }
  }
  ctx.details.B1 = m;
  const rows = [];
  for (const mb of sizes) {
    const service = median(m[mb].service);
    const server = median(m[mb].server);
    const script = median(m[mb].script);
    const floor = median(m[mb].floor);
    const writer = writers ? `; UKI writer: ${writers.dflt} (default)` : '';
    rows.push(row(`B1-cold-${mb}MB`, 's', service, { baseline: script, goal: '<= 1.1', note: `vs baseline-build.sh; service-recorded ${server?.toFixed(3)} s${writer}` }));
    rows.push(row(`B1-cold-${mb}MB-floor`, 's', service, { baseline: floor, goal: '<= 2', note: 'vs cp of the output bytes + fsync' }));
    for (const name of Object.keys(others)) {
      const v = median(m[mb][name]);
      const what = name === 'signed' ? `signed for Secure Boot, ${(v / service).toFixed(3)}× the unsigned build` : `--uki-writer ${name.replace(/-writer$/, '')}`;
      rows.push(row(`B1-cold-${mb}MB-${name}`, 's', v, { baseline: floor, note: `informational: ${what}, vs the floor; ${(v / script).toFixed(3)}× the script` }));
    }
  }
  return rows;
}

export async function b6Scaling(ctx, svc) {
  const sizes = CONFIG.scalingSizesMb;
  const m = await measureBuilds(ctx, svc, sizes, { runs: CONFIG.scalingRuns, baselines: false });
  const times = Object.fromEntries(sizes.map((mb) => [mb, m[mb].service]));
  ctx.details.B6scaling = m;
  const medians = sizes.map((mb) => median(times[mb]));
  const fit = linearFit(sizes, medians);
  const rows = sizes.map((mb, i) => row(`B6-build-${mb}MB`, 's', medians[i], { note: `${((medians[i] / mb) * 1000).toFixed(1)} ms per MiB of base initramfs` }));
  // Worst relative miss of the fitted line over the measured sizes.
  const worst = Math.max(...sizes.map((mb, i) => Math.abs(medians[i] - (fit.a + fit.b * mb)) / medians[i]));
  rows.push(row('B6-build-linearity-r2', 'R²', fit.r2, {
    goal: '>= 0.99',
    note: `t = ${fit.a.toFixed(3)} s + ${(fit.b * 1000).toFixed(2)} ms/MiB · size; worst point ${(worst * 100).toFixed(1)}% off the line`,
  }));
  return rows;
}

