// Reads vitest JSON reports (--reporter=json) into counts and one closing line for CI. A skipped or
// todo test counts against the run like a failed one: a run is good only when every test ran and passed.
import fs from 'node:fs';

/** Counts of one report file (vitest JSON, or pytest's JUnit XML); a missing file is one failure. */
export function readReport(file) {
  if (!fs.existsSync(file)) return { passed: 0, failed: 1, skipped: 0, skippedNames: [], problems: [`missing test report ${file}`] };
  if (file.endsWith('.xml')) return readJunit(file);
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  const skippedNames = [];
  const problems = [];
  for (const t of r.testResults ?? []) {
    // a file that threw while loading (e.g. a missing prerequisite) has no tests, only its message
    if (t.status === 'failed' && (t.assertionResults ?? []).length === 0) problems.push(`${t.name}: ${String(t.message ?? '').split('\n')[0]}`);
    for (const a of t.assertionResults ?? []) {
      if (a.status !== 'passed' && a.status !== 'failed') skippedNames.push(`${a.status}: ${t.name} > ${a.fullName}`);
    }
  }
  return {
    passed: r.numPassedTests ?? 0,
    failed: (r.numFailedTests ?? 0) + (r.numFailedTestSuites ?? 0),
    skipped: (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0),
    skippedNames,
    problems,
  };
}

/** pytest's --junitxml report: the counts of its <testsuite> element. */
function readJunit(file) {
  const suite = /<testsuite\b([^>]*)>/.exec(fs.readFileSync(file, 'utf8'));
  if (!suite) return { passed: 0, failed: 1, skipped: 0, skippedNames: [], problems: [`${file}: no <testsuite> in the JUnit report`] };
  const count = (name) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite[1])?.[1] ?? 0);
  const failed = count('failures') + count('errors');
  const skipped = count('skipped');
  return { passed: count('tests') - failed - skipped, failed, skipped, skippedNames: skipped ? [`${skipped} pytest test(s) in ${file}`] : [], problems: [] };
}

export function addReports(reports) {
  const sum = { passed: 0, failed: 0, skipped: 0, skippedNames: [], problems: [] };
  for (const r of reports) {
    sum.passed += r.passed;
    sum.failed += r.failed;
    sum.skipped += r.skipped;
    sum.skippedNames.push(...r.skippedNames);
    sum.problems.push(...r.problems);
  }
  return sum;
}

/** Good: something ran, nothing failed, nothing was skipped. */
export function good(counts) {
  return counts.passed > 0 && counts.failed === 0 && counts.skipped === 0;
}

/**
 * The closing lines: what did not run or did not load, then "<label>: N passed, N failed, N skipped",
 * prefixed with "FAILED:" unless the run was good.
 */
export function summary(label, counts) {
  const lines = [...counts.problems, ...counts.skippedNames.map((n) => `not run (${n})`)];
  const verdict = good(counts) ? '' : 'FAILED: ';
  const why = counts.skipped > 0 ? ' (a skipped test counts as a failure)' : counts.passed === 0 ? ' (no test ran)' : '';
  lines.push(`${label}: ${verdict}${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped${why}`);
  return lines.join('\n');
}
