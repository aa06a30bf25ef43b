#!/usr/bin/env node
// Compares two builds of the service measured by alternating invocations of the harness (e.g.
// BENCH_CLI=/tmp/old/dist/cli.js, then the changed build, several rounds). Each argument is
// LABEL=FILE[,FILE...], where each FILE is a saved copy of one invocation's results-details file
// (bench/work/results-details-partial.json for a BENCH_ONLY run). For every figure and label it prints
// the median over invocations of the figure's ratio to its same-run baseline, and, for every group of
// runs that alternate the service with a baseline server (e.g. B3 head: service, nginx, service, …),
// the median over all those pairs of service / baseline per measured quantity (req/s, CPU per
// request): the neighbours in time share the machine's load, so these pair ratios move least with it.
// Usage: compare-runs.mjs before=a.json,c.json after=b.json,d.json
import fs from 'node:fs';
import { median } from '../lib/stats.mjs';

const args = process.argv.slice(2).map((a) => /^([^=]+)=(.+)$/.exec(a));
if (args.length === 0 || args.some((m) => !m)) {
  process.stderr.write('usage: compare-runs.mjs LABEL=FILE[,FILE...] [LABEL=FILE[,FILE...] ...]\n');
  process.exit(2);
}
const labels = args.map(([, label, files]) => ({ label, details: files.split(',').map((f) => JSON.parse(fs.readFileSync(f, 'utf8'))) }));

/** Every { service: [runs], <baseline>: [runs] } object in a details file's `runs`, by dotted path. */
function pairedGroups(node, at = [], out = new Map()) {
  if (!node || typeof node !== 'object' || Array.isArray(node)) return out;
  const others = Object.keys(node).filter((k) => k !== 'service' && Array.isArray(node[k]));
  if (Array.isArray(node.service) && others.length === 1 && node[others[0]].length === node.service.length) {
    out.set(`${at.join('.')} (÷ ${others[0]})`, node.service.map((s, i) => [s, node[others[0]][i]]));
    return out;
  }
  for (const [k, v] of Object.entries(node)) pairedGroups(v, [...at, k], out);
  return out;
}

const fmt = (x) => (x === null ? '—' : x.toFixed(3));
const spread = (xs) => (xs.length ? `${fmt(median(xs))} (${xs.length}: ${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})` : '—');
const lines = [];

const figureIds = [...new Set(labels.flatMap((l) => l.details.flatMap((d) => d.rows.map((r) => r.id))))];
lines.push('figure ratio to its same-run baseline: median (invocations: min–max)');
for (const id of figureIds) {
  const cells = labels.map(({ label, details }) => {
    const ratios = details.map((d) => d.rows.find((r) => r.id === id)?.ratio).filter((r) => Number.isFinite(r));
    return `${label} ${spread(ratios)}`;
  });
  lines.push(`  ${id}: ${cells.join('   ')}`);
}

const groups = new Map();
for (const { label, details } of labels) {
  for (const d of details) {
    for (const [group, pairs] of pairedGroups(d.runs)) {
      for (const [s, b] of pairs) {
        for (const key of Object.keys(s)) {
          // A run's request count and duration only restate its rate.
          if (key === 'requests' || key === 'seconds') continue;
          if (typeof s[key] !== 'number' || typeof b?.[key] !== 'number' || b[key] === 0) continue;
          const k = `${group} ${key}`;
          if (!groups.has(k)) groups.set(k, new Map());
          const byLabel = groups.get(k);
          if (!byLabel.has(label)) byLabel.set(label, []);
          byLabel.get(label).push(s[key] / b[key]);
        }
      }
    }
  }
}
lines.push('', 'service / baseline per pair of neighbouring runs: median (pairs: min–max)');
for (const [k, byLabel] of groups) lines.push(`  ${k}: ${labels.map(({ label }) => `${label} ${spread(byLabel.get(label) ?? [])}`).join('   ')}`);
process.stdout.write(`${lines.join('\n')}\n`);
