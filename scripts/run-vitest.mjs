#!/usr/bin/env node
// Runs vitest on the given paths and ends with one plain summary line ("vitest: N passed, N failed,
// N skipped", prefixed with "FAILED:" when the run is not good) that CI systems read; exits non-zero
// when anything failed, anything was skipped, or nothing ran. The JSON report is kept as
// test-results/vitest-<label>.json (label from UOD_TEST_LABEL) for scripts/test-summary.mjs.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { good, readReport, summary } from './vitest-report.mjs';

const report = path.resolve(`test-results/vitest-${process.env.UOD_TEST_LABEL ?? 'run'}.json`);
fs.mkdirSync(path.dirname(report), { recursive: true });
fs.rmSync(report, { force: true });
const vitest = path.resolve('node_modules/vitest/vitest.mjs');
const run = spawnSync(process.execPath, [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`, ...process.argv.slice(2)], {
  stdio: 'inherit',
});

const counts = readReport(report);
if (run.status !== 0 && counts.failed === 0) counts.failed = 1; // vitest failed outside any test (e.g. its global setup)
console.log(summary('vitest', counts));
process.exit(good(counts) ? 0 : 1);
