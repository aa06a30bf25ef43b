// Runs wrk (Debian's package) with bench/wrk/load.lua and returns its numbers. Counted runs stop at an
// exact number of responses (the script signals; we interrupt wrk); timed runs use wrk's own duration.
import path from 'node:path';
import { BENCH } from './paths.mjs';
import { start, stop } from './proc.mjs';

const SCRIPT = path.join(BENCH, 'wrk', 'load.lua');

/**
 * opts: { url, connections, count?, seconds?, method?, bodyFile?, pathsFile?, headers?, range?: {size, chunk, align}, seed? }
 * Counted mode (count > 0) returns { requests: count, seconds: time until the count-th response }.
 * Timed mode returns wrk's totals over its run. Both include latency percentiles (µs) and error counts.
 */
export async function runWrk(opts) {
  const counted = (opts.count ?? 0) > 0;
  const seconds = counted ? Math.max(60, opts.maxSeconds ?? 60) : opts.seconds;
  const args = ['-t1', `-c${opts.connections}`, `-d${seconds}s`, '--timeout', '30s', '-s', SCRIPT, opts.url, '--',
    `count=${opts.count ?? 0}`, `conns=${opts.connections}`, `seed=${opts.seed ?? 1}`];
  if (opts.method) args.push(`method=${opts.method}`);
  if (opts.bodyFile) args.push(`body=${opts.bodyFile}`);
  if (opts.pathsFile) args.push(`paths=${opts.pathsFile}`);
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push(`header=${k}:${v}`);
  if (opts.range) args.push(`range=${opts.range.size}:${opts.range.chunk}:${opts.range.align}`);

  const handle = start('wrk', args);
  let stdout = '';
  let stderr = '';
  let interrupt = null;
  handle.child.stdout.on('data', (d) => (stdout += d));
  handle.child.stderr.on('data', (d) => {
    stderr += d;
    // wrk ignores SIGINT until just after its threads start: repeat until it has taken effect.
    if (counted && !interrupt && stderr.includes('UOD_WRK_DONE')) {
      handle.child.kill('SIGINT');
      interrupt = setInterval(() => handle.child.kill('SIGINT'), 500);
    }
  });
  const bound = setTimeout(() => stop(handle, 'SIGKILL', 1000), (seconds + 30) * 1000);
  const { code, signal } = await handle.exited;
  clearTimeout(bound);
  clearInterval(interrupt);
  const line = stdout.split('\n').find((l) => l.startsWith('UOD_WRK_RESULT '));
  if (code !== 0 || !line) throw new Error(`wrk failed (${code ?? signal}):\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
  const r = JSON.parse(line.slice('UOD_WRK_RESULT '.length));
  if (counted && r.counted_elapsed_us <= 0) throw new Error(`wrk did not reach ${opts.count} responses:\n${stdout}`);
  const errors = r.err_connect + r.err_read + r.err_write + r.err_status + r.err_timeout;
  return {
    requests: counted ? opts.count : r.requests,
    seconds: counted ? r.counted_elapsed_us / 1e6 : r.duration_us / 1e6,
    bytes: r.bytes,
    latencyUs: { mean: r.lat_mean_us, p50: r.lat_p50_us, p90: r.lat_p90_us, p99: r.lat_p99_us, max: r.lat_max_us },
    errors,
    raw: r,
  };
}
