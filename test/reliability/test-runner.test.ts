// The test run itself must not read green over tests that did not run: scripts/run-vitest.mjs and
// scripts/test-summary.mjs count a skipped or todo test as a failure, and a missing prerequisite
// fails the file that needs it with what to make or install.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { requireBaseArtifacts, requireFile, requireTool } from '../support/prerequisites.js';
import { BASE_ARTIFACTS, REPO, serviceTempDir } from '../support/service-process.mjs';

const VITEST_API = path.join(REPO, 'node_modules/vitest/dist/index.js');

/** Runs scripts/run-vitest.mjs on a directory holding `files` (name → source); returns its exit code and last line. */
function runVitest(files: Record<string, string>): { status: number | null; last: string; out: string; report: string } {
  const root = serviceTempDir('vitest-fixture');
  fs.writeFileSync(path.join(root, 'vitest.config.mjs'), 'export default {};\n');
  for (const [name, source] of Object.entries(files)) fs.writeFileSync(path.join(root, name), source);
  const label = `fixture-${path.basename(root)}`;
  const run = spawnSync(process.execPath, ['scripts/run-vitest.mjs', '--root', root], {
    cwd: REPO,
    env: { ...process.env, UOD_TEST_LABEL: label, NO_COLOR: '1' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  const report = path.join(REPO, 'test-results', `vitest-${label}.json`);
  const out = run.stdout.trim();
  return { status: run.status, last: out.split('\n').pop() ?? '', out, report };
}

const header = `import { describe, expect, it } from ${JSON.stringify(VITEST_API)};\n`;

describe('scripts/run-vitest.mjs', () => {
  test('every test passed: exit 0 and a plain summary', () => {
    const r = runVitest({ 'a.test.mjs': `${header}it('one', () => expect(1).toBe(1));\nit('two', () => expect(2).toBe(2));\n` });
    fs.rmSync(r.report, { force: true });
    expect([r.status, r.last]).toEqual([0, 'vitest: 2 passed, 0 failed, 0 skipped']);
  });

  test('a skipped and a todo test: exit 1, FAILED, and which ones did not run', () => {
    const r = runVitest({
      'a.test.mjs': `${header}it('runs', () => expect(1).toBe(1));\ndescribe.skip('group', () => { it('skipped', () => {}); });\nit.todo('later');\n`,
    });
    fs.rmSync(r.report, { force: true });
    expect(r.status).toBe(1);
    expect(r.last).toBe('vitest: FAILED: 1 passed, 0 failed, 2 skipped (a skipped test counts as a failure)');
    expect(r.out).toMatch(/not run \(skipped: .*a\.test\.mjs > group skipped\)\nnot run \(todo: .*a\.test\.mjs > later\)\n/);
  });

  test('a file that stops on a missing prerequisite: exit 1, FAILED, and its message', () => {
    const r = runVitest({
      'a.test.mjs': `${header}it('runs', () => expect(1).toBe(1));\n`,
      'b.test.mjs': `throw new Error('base artifacts missing in /x: vmlinuz-amd64; run \`make base-artifacts-tiny\`');\n`,
    });
    fs.rmSync(r.report, { force: true });
    expect(r.status).toBe(1);
    expect(r.last).toBe('vitest: FAILED: 1 passed, 1 failed, 0 skipped');
    expect(r.out).toMatch(/b\.test\.mjs: base artifacts missing in \/x: vmlinuz-amd64; run `make base-artifacts-tiny`\n/);
  });

  test('scripts/test-summary.mjs adds reports up and fails on skipped ones', () => {
    const dir = serviceTempDir('reports');
    const write = (name: string, r: object) => fs.writeFileSync(path.join(dir, name), JSON.stringify({ testResults: [], ...r }));
    write('good.json', { numPassedTests: 3 });
    write('skips.json', { numPassedTests: 2, numPendingTests: 1 });
    const sum = (...names: string[]) => spawnSync(process.execPath, ['scripts/test-summary.mjs', ...names.map((n) => path.join(dir, n))], { cwd: REPO, encoding: 'utf8' });
    const ok = sum('good.json');
    expect([ok.status, ok.stdout]).toEqual([0, 'total: 3 passed, 0 failed, 0 skipped\n']);
    const bad = sum('good.json', 'skips.json');
    expect([bad.status, bad.stdout]).toEqual([1, 'total: FAILED: 5 passed, 0 failed, 1 skipped (a skipped test counts as a failure)\n']);
  });
});

describe('prerequisites', () => {
  test('a missing base artifact names the make target that makes it', () => {
    expect(() => requireBaseArtifacts('vmlinuz-amd64', 'no-such-initramfs.img')).toThrow(
      new Error(`base artifacts missing in ${BASE_ARTIFACTS}: no-such-initramfs.img; run \`make base-artifacts\``),
    );
    expect(() => requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-arm64.img')).not.toThrow();
  });

  test('a missing tool or file names the package to install', () => {
    expect(() => requireTool('no-such-tool-uod', 'uod-tools')).toThrow(new Error('no-such-tool-uod is not on PATH: apt install uod-tools (or `make deps`)'));
    expect(() => requireFile('/no/such/file', 'uod-files')).toThrow(new Error('/no/such/file is missing: apt install uod-files (or `make deps`)'));
    expect(() => requireTool('sh', 'dash')).not.toThrow();
  });
});
