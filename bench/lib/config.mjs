// How much of everything the benchmark does: the full run (the figures to publish, ~10 minutes on two
// cores) or BENCH_QUICK=1 (a smoke run of every figure with fewer repetitions, ~2 minutes).
export const QUICK = process.env.BENCH_QUICK === '1';

/** BENCH_ONLY=B1,B3 runs only those figures (results then go to bench/work/results-partial.json). */
export const ONLY = (process.env.BENCH_ONLY ?? '')
  .split(',')
  .map((s) => s.trim().toUpperCase())
  .filter(Boolean);

export function enabled(id) {
  return ONLY.length === 0 || ONLY.includes(id);
}

export const CONFIG = QUICK
  ? {
      buildRuns: 2, // B1: per size, for the service and each baseline
      scalingSizesMb: [30, 100, 200, 400],
      scalingRuns: 2,
      seqPosts: 1000,
      burstRounds: 3,
      latencyRuns: 1,
      fullGetSeconds: 2,
      fullGetRuns: 1,
      rangeReads: 3000,
      rangeRuns: 2,
      headRequests: 5000,
      headRuns: 1,
      putSeconds: 2,
      putRuns: 1,
      rssRuns: 1,
      listBuilds: 10_000,
      listCheckins: 10_000,
      listGets: 20,
      listRuns: 1,
    }
  : {
      buildRuns: 5,
      scalingSizesMb: [30, 100, 200, 400],
      scalingRuns: 7,
      seqPosts: 1000,
      burstRounds: 10,
      latencyRuns: 5,
      fullGetSeconds: 5,
      fullGetRuns: 5,
      rangeReads: 3000,
      rangeRuns: 7,
      headRequests: 20_000,
      headRuns: 5,
      putSeconds: 5,
      putRuns: 5,
      rssRuns: 3,
      listBuilds: 10_000,
      listCheckins: 10_000,
      listGets: 100,
      listRuns: 5,
    };
