// Small statistics used by every figure: median of runs, percentiles of latency samples, and the
// least-squares line (with R²) used for the scaling figure.

export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples. */
export function percentile(samples, p) {
  if (samples.length === 0) return null;
  const v = Float64Array.from(samples).sort();
  const rank = Math.min(v.length, Math.max(1, Math.ceil((p / 100) * v.length)));
  return v[rank - 1];
}

/** y = a + b·x by least squares; r2 is the coefficient of determination. */
export function linearFit(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (xs[i] - mx) ** 2;
    sxy += (xs[i] - mx) * (ys[i] - my);
    syy += (ys[i] - my) ** 2;
  }
  const b = sxy / sxx;
  const a = my - b * mx;
  let ssr = 0;
  for (let i = 0; i < n; i++) ssr += (ys[i] - (a + b * xs[i])) ** 2;
  return { a, b, r2: syy === 0 ? 1 : 1 - ssr / syy };
}

/** Rounds for display and JSON: 4 significant digits, integers kept whole. */
export function round(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x ?? null;
  if (Math.abs(x) >= 1000) return Math.round(x);
  return Number(x.toPrecision(4));
}
