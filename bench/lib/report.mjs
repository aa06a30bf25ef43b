// Result rows ({id, unit, value, baseline, ratio, goal, met}), the printed table and the JSON files.
import fs from 'node:fs';
import { round } from './stats.mjs';

/**
 * A figure. `goal` is "<= X", ">= X" or "== X"; it applies to the ratio when there is a baseline,
 * otherwise to the value itself. A row without a goal is informational (goal and met are null).
 */
export function row(id, unit, value, { baseline = null, goal = null, note = '' } = {}) {
  const ratio = baseline !== null && value !== null && baseline !== 0 ? value / baseline : null;
  let met = null;
  if (goal !== null) {
    const m = /^(<=|>=|==)\s*(-?[\d.]+)$/.exec(goal);
    if (!m) throw new Error(`bad goal "${goal}"`);
    const subject = baseline !== null ? ratio : value;
    const bound = Number(m[2]);
    if (subject === null || !Number.isFinite(subject)) met = false;
    else met = m[1] === '<=' ? subject <= bound : m[1] === '>=' ? subject >= bound : subject === bound;
  }
  return { id, unit, value: round(value), baseline: round(baseline), ratio: round(ratio), goal, met, note };
}

/** The JSON form: exactly the documented keys. */
export function publicRows(rows) {
  return rows.map(({ id, unit, value, baseline, ratio, goal, met }) => ({ id, unit, value, baseline, ratio, goal, met }));
}

export function formatTable(rows) {
  const head = ['id', 'unit', 'value', 'baseline', 'ratio', 'goal', 'met', 'note'];
  const cells = rows.map((r) => [
    r.id,
    r.unit,
    fmt(r.value),
    fmt(r.baseline),
    fmt(r.ratio),
    r.goal ?? '—',
    r.met === null ? '—' : r.met ? 'yes' : 'NO',
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => String(c[i]).length)));
  const line = (c) => '| ' + c.map((x, i) => String(x).padEnd(widths[i])).join(' | ') + ' |';
  return [line(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...cells.map(line)].join('\n');
}

function fmt(x) {
  if (x === null || x === undefined) return '—';
  return String(x);
}

export function writeJson(file, data) {
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
}
