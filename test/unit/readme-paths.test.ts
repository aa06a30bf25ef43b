// Every file or directory that README.md and lab/README.md point at is in the repository (git
// ls-files), read relative to the README's own directory as a reader or a Markdown viewer would.
// A path that .gitignore covers is something a build or a run makes (dist/, base-artifacts/out/,
// test-results/), not a broken reference, and is left alone.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO } from '../support/service.js';

const READMES = ['README.md', 'lab/README.md'];
// A file named on its own in a code span, e.g. `links.ts`: in lab/README.md, lab/links.ts.
const SOURCE_FILE = /^[\w.-]+\.(ts|mjs|js|py|sh|md|yml|yaml|apt)$/;

const tracked = new Set<string>();
for (const file of execFileSync('git', ['ls-files', '-z'], { cwd: REPO, encoding: 'utf8' }).split('\0').filter(Boolean)) {
  for (let p = file; p !== '.'; p = path.posix.dirname(p)) tracked.add(p);
}

function ignored(repoPath: string): boolean {
  try {
    execFileSync('git', ['check-ignore', '-q', '--no-index', repoPath], { cwd: REPO });
    return true;
  } catch {
    return false;
  }
}

/** The paths a README refers to, each with its line number, as written. */
function references(markdown: string, dir: string): Array<{ line: number; ref: string }> {
  // First path segments that mean "a path in this repository": the entries of the README's directory
  // and of the repository root (a root-relative path in lab/README.md is a wrong reference), and `..`.
  const entries = (d: string) => new Set([...tracked].filter((p) => path.posix.dirname(p) === d).map((p) => path.posix.basename(p)));
  const firsts = new Set([...entries(dir), ...entries('.'), '..']);
  const found: Array<{ line: number; ref: string }> = [];
  let fenced = false;
  markdown.split('\n').forEach((text, i) => {
    const line = i + 1;
    if (text.trimStart().startsWith('```')) {
      fenced = !fenced;
      return;
    }
    const refs = new Set<string>();
    // Markdown links: their targets, without an #anchor; external and in-page links are not files.
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (target && !/^[a-z]+:/.test(target)) refs.add(target);
    }
    // Paths anywhere (prose, code spans, code blocks) that start with a directory of the repository;
    // not a pattern such as `data/builds/<id>/` (a placeholder or a glob follows the match).
    for (const m of text.matchAll(/(?<![\w./$~-])(\.\.\/)?[\w.-]+(?:\/[\w.-]+)+\/?/g)) {
      const ref = m[0].replace(/\.+$/, ''); // a full stop ending the sentence
      const next = text[m.index! + m[0].length] ?? '';
      if (firsts.has(ref.split('/')[0]!) && !/[<>…*$]/.test(next)) refs.add(ref);
    }
    // A source file named on its own in a code span, outside code blocks.
    if (!fenced) for (const m of text.matchAll(/`([^`]+)`/g)) if (SOURCE_FILE.test(m[1]!)) refs.add(m[1]!);
    for (const ref of refs) found.push({ line, ref });
  });
  return found;
}

describe('README path references', () => {
  for (const readme of READMES) {
    test(`every file or directory ${readme} points at is in the repository`, () => {
      const dir = path.posix.dirname(readme);
      const refs = references(fs.readFileSync(path.join(REPO, readme), 'utf8'), dir);
      // the scan reads what is there: both READMEs name several source files and directories
      expect(refs.length).toBeGreaterThan(10);
      const missing = refs
        .map(({ line, ref }) => ({ line, ref, repoPath: path.posix.normalize(path.posix.join(dir, ref)).replace(/\/$/, '') }))
        .filter(({ repoPath }) => !tracked.has(repoPath) && !ignored(repoPath))
        .map(({ line, ref, repoPath }) => `${readme}:${line}: ${ref} (${repoPath} is not in the repository)`);
      expect(missing).toEqual([]);
    });
  }
});
