// B5: the service's memory while it runs four 200 MB builds at once (--build-concurrency 4, so that none
// waits). Each run starts a fresh service process so that its kernel-kept peak (VmHWM) covers exactly
// start-up plus these builds; VmRSS is also polled every 20 ms as a cross-check. Only the service
// process is counted; the tools it runs (xorriso, grub-mkimage, mtools) are sampled separately.
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG } from '../lib/config.mjs';
import { buildRequest, fillerName } from '../lib/fixtures.mjs';
import { BASE_DIR, WORK } from '../lib/paths.mjs';
import { memoryOf, processTree, settleDisk } from '../lib/proc.mjs';
import { row } from '../lib/report.mjs';
import { startService, submitBuild, waitForBuild } from '../lib/service.mjs';
import { median } from '../lib/stats.mjs';

const BUILDS = 4;
/** /proc reports kB (KiB); figures are in MB (10^6 bytes), the stricter reading of the goal. */
const mb = (kb) => (kb * 1024) / 1e6;

export async function b5(ctx) {
  const runs = [];
  for (let r = 0; r < CONFIG.rssRuns; r++) {
    const svc = await startService({ name: `b5-${r}`, dataDir: path.join(WORK, 'data-b5'), baseDir: BASE_DIR, args: ['--build-concurrency', String(BUILDS)] });
    let polledMaxKb = 0;
    let treeMaxKb = 0;
    const poll = setInterval(() => {
      const mem = memoryOf(svc.pid);
      if (mem && mem.rssKb > polledMaxKb) polledMaxKb = mem.rssKb;
      let tree = 0;
      for (const pid of processTree(svc.pid)) tree += memoryOf(pid)?.rssKb || 0;
      treeMaxKb = Math.max(treeMaxKb, tree);
    }, 20);
    try {
      const idleKb = memoryOf(svc.pid).rssKb;
      const t0 = Date.now();
      const ids = await Promise.all(Array.from({ length: BUILDS }, (_, i) =>
        submitBuild(svc, buildRequest({ initramfs: fillerName(200), cmdline: `console=ttyS0 uod.bench=rss-${r}-${i}-${Date.now()}` }))));
      await Promise.all(ids.map((id) => waitForBuild(svc, id, { everyMs: 50, timeoutMs: 600_000 })));
      const seconds = (Date.now() - t0) / 1000;
      const hwmKb = memoryOf(svc.pid).hwmKb;
      runs.push({ hwmMb: mb(hwmKb), polledMaxMb: mb(polledMaxKb), idleMb: mb(idleKb), withToolsMaxMb: mb(treeMaxKb), seconds });
      ctx.log(`B5 run ${r + 1}/${CONFIG.rssRuns}: peak RSS ${mb(hwmKb).toFixed(1)} MB (idle ${mb(idleKb).toFixed(1)} MB), ${BUILDS} builds in ${seconds.toFixed(1)} s`);
    } finally {
      clearInterval(poll);
      await svc.stop();
      fs.rmSync(svc.dataDir, { recursive: true, force: true });
    }
    await settleDisk();
  }
  ctx.details.B5 = runs;
  const med = (key) => median(runs.map((x) => x[key]));
  return [
    row('B5-peak-rss-4x200MB', 'MB', med('hwmMb'), {
      goal: '<= 200',
      note: `VmHWM of the service; idle ${med('idleMb').toFixed(0)}, polled max ${med('polledMaxMb').toFixed(0)}, with its tools ${med('withToolsMaxMb').toFixed(0)}; builds took ${med('seconds').toFixed(1)} s`,
    }),
  ];
}
