#!/usr/bin/env node
// Adds up the vitest JSON reports named on the command line into one closing line for CI
// (scripts/vitest-report.mjs: a skipped test counts as a failure); exits non-zero unless the sum is good.
import { addReports, good, readReport, summary } from './vitest-report.mjs';

const counts = addReports(process.argv.slice(2).map(readReport));
console.log(summary('total', counts));
process.exit(good(counts) ? 0 : 1);
