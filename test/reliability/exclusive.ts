// Heavy reliability files (crash loops, disk-full, throughput comparisons) take turns across vitest
// workers: on a machine with more cores vitest runs files in parallel, and one file's load would distort
// another's timings and deadlines. A lock directory holds the owner's pid; a dead owner's lock is taken over.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './fixtures.js';

const LOCK = path.join(os.tmpdir(), 'uod-reliability-heavy.lock');

function ownerAlive(): boolean {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(LOCK, 'pid'), 'utf8'));
  } catch {
    pid = 0;
  }
  if (!pid) {
    // The owner is between mkdir and writing its pid, unless that was long ago.
    const st = fs.statSync(LOCK, { throwIfNoEntry: false });
    return st !== undefined && Date.now() - st.mtimeMs < 10_000;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits (at most `timeoutMs`) until no other heavy file runs; returns the release function. */
export async function takeTurn(timeoutMs: number): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      fs.writeFileSync(path.join(LOCK, 'pid'), String(process.pid));
      const release = () => {
        process.off('exit', release);
        try {
          if (fs.readFileSync(path.join(LOCK, 'pid'), 'utf8') === String(process.pid)) fs.rmSync(LOCK, { recursive: true, force: true });
        } catch {
          // already gone
        }
      };
      process.on('exit', release);
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!ownerAlive()) {
        fs.rmSync(LOCK, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another heavy reliability test held ${LOCK} for ${timeoutMs} ms`);
      await sleep(250);
    }
  }
}
