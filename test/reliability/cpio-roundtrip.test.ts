// Property: whatever tree a request describes, GNU cpio (an implementation independent of ours)
// extracts exactly that tree from what encodeNewc and buildOverlay write: names (any UTF-8), types,
// permission bits, owners, contents (empty to megabytes), symlink targets.
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { encodeNewc, type CpioEntry } from '../../src/image/cpio.js';
import { buildOverlay, type OverlayDirOverride, type OverlayFile } from '../../src/image/overlay.js';
import { extract, type ExtractedEntry } from '../support/gnu-cpio.js';
import { requireRoot } from '../support/prerequisites.js';
import { seededRandom } from './fixtures.js';

requireRoot('the cpio round trip restores owners');

// Characters that break naive writers: multi-byte UTF-8 (2, 3 and 4 bytes), shell and glob
// metacharacters, whitespace including newline, backslash, quotes, a leading dash.
const NAME_CHARS = ['a', 'b', 'Z', '0', '.', '-', '_', ' ', '\t', '\n', '*', '?', '\\', '"', "'", ':', '#', 'é', 'ß', '✓', '中', '\u{1F600}', '\u{10FFFF}'];
const segment = fc
  .array(fc.constantFrom(...NAME_CHARS), { minLength: 1, maxLength: 8 })
  .map((chars) => chars.join(''))
  .filter((s) => s !== '.' && s !== '..');
const relPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/'));

/** File content as (size, seed): a few megabytes stay cheap to generate and to shrink. */
const content = fc.oneof(
  { weight: 3, arbitrary: fc.record({ size: fc.integer({ min: 0, max: 300 }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ size: 0, seed: 0 }) },
  { weight: 1, arbitrary: fc.record({ size: fc.integer({ min: 1, max: 3 * 1024 * 1024 }), seed: fc.nat() }) },
);
function bytes(c: { size: number; seed: number }): Buffer {
  const random = seededRandom(c.seed);
  const out = Buffer.alloc(c.size);
  for (let i = 0; i + 4 <= c.size; i += 4) out.writeUInt32LE((random() * 2 ** 32) >>> 0, i);
  for (let i = c.size - (c.size % 4); i < c.size; i++) out[i] = (random() * 256) | 0;
  return out;
}

// 2^32-1 is chown's "leave unchanged", which no extraction can show; every other 32-bit id can be restored.
const owner = fc.oneof(fc.constantFrom(0, 1, 65534, 65535, 65536, 2 ** 31, 2 ** 32 - 2), fc.integer({ min: 0, max: 2 ** 32 - 2 }));
const permissions = fc.integer({ min: 0, max: 0o7777 });
const linkTarget = fc.oneof(
  relPath,
  relPath.map((p) => `/${p}`),
  relPath.map((p) => `../../../../${p}`),
  fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0')),
);

/** A set of distinct paths closed under "parent of": every proper prefix is a directory. */
function treeShape(paths: string[]): { dirs: Set<string>; leaves: string[] } {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return { dirs, leaves: paths.filter((p) => !dirs.has(p)) };
}

const leafSpec = fc.record({
  kind: fc.constantFrom('file', 'file', 'symlink', 'dir'),
  mode: permissions,
  uid: owner,
  gid: owner,
  content,
  linkTarget,
});

/** Compares what GNU cpio extracted with what was meant; returns the differences. */
function differences(expected: Map<string, ExtractedEntry>, got: Map<string, ExtractedEntry>): string[] {
  const out: string[] = [];
  const show = (s: string) => JSON.stringify(s);
  for (const name of got.keys()) if (!expected.has(name)) out.push(`unexpected ${show(name)}`);
  for (const [name, want] of expected) {
    const have = got.get(name);
    if (!have) {
      out.push(`missing ${show(name)}`);
      continue;
    }
    if (have.type !== want.type) out.push(`${show(name)}: ${have.type}, expected ${want.type}`);
    if (want.type !== 'symlink' && have.mode !== want.mode) out.push(`${show(name)}: mode ${have.mode.toString(8)}, expected ${want.mode.toString(8)}`);
    if (have.uid !== want.uid || have.gid !== want.gid) out.push(`${show(name)}: owner ${have.uid}:${have.gid}, expected ${want.uid}:${want.gid}`);
    if (want.type === 'file' && !have.content?.equals(want.content as Buffer)) out.push(`${show(name)}: content differs (${have.content?.length} vs ${want.content?.length} bytes)`);
    if (want.type === 'symlink' && have.linkTarget !== want.linkTarget) out.push(`${show(name)}: -> ${show(have.linkTarget ?? '')}, expected ${show(want.linkTarget ?? '')}`);
  }
  return out;
}

describe('newc writer round trip through GNU cpio (property)', () => {
  test('encodeNewc: random trees extract to exactly the entries written', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(relPath, { minLength: 1, maxLength: 10 }), fc.array(leafSpec, { minLength: 10, maxLength: 10 }), fc.array(fc.tuple(permissions, owner, owner), { minLength: 40, maxLength: 40 }), async (paths, specs, dirAttrs) => {
        const { dirs, leaves } = treeShape(paths);
        const entries: CpioEntry[] = [];
        [...dirs].sort().forEach((name, i) => {
          const [mode, uid, gid] = dirAttrs[i % dirAttrs.length] as [number, number, number];
          entries.push({ name, type: 'dir', mode, uid, gid });
        });
        leaves.forEach((name, i) => {
          const s = specs[i % specs.length]!;
          if (s.kind === 'dir') entries.push({ name, type: 'dir', mode: s.mode, uid: s.uid, gid: s.gid });
          else if (s.kind === 'symlink') entries.push({ name, type: 'symlink', mode: 0o777, uid: s.uid, gid: s.gid, linkTarget: s.linkTarget });
          else entries.push({ name, type: 'file', mode: s.mode, uid: s.uid, gid: s.gid, data: bytes(s.content) });
        });
        // parents first: sorting by path puts a directory before everything below it
        entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

        const expected = new Map<string, ExtractedEntry>(
          entries.map((e) => [e.name, { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, content: e.data ?? Buffer.alloc(0), linkTarget: e.linkTarget }]),
        );
        const got = await extract(encodeNewc(entries));
        expect(differences(expected, got)).toEqual([]);
      }),
      { numRuns: 40 },
    );
  }, 300_000);

  test('buildOverlay: random requests extract to the files asked for, with every parent directory as the rules say', async () => {
    const fileSpec = fc.record({
      symlink: fc.boolean(),
      content,
      linkTarget,
      mode: fc.option(permissions, { nil: undefined }),
      uid: fc.option(owner, { nil: undefined }),
      gid: fc.option(owner, { nil: undefined }),
      dirMode: fc.option(permissions, { nil: undefined }),
      dirUid: fc.option(owner, { nil: undefined }),
      dirGid: fc.option(owner, { nil: undefined }),
    });
    const overrideSpec = fc.record({ mode: fc.option(permissions, { nil: undefined }), uid: fc.option(owner, { nil: undefined }), gid: fc.option(owner, { nil: undefined }) });

    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(relPath, { minLength: 1, maxLength: 8 }),
        fc.uniqueArray(relPath, { maxLength: 3 }),
        fc.array(fileSpec, { minLength: 8, maxLength: 8 }),
        fc.array(overrideSpec, { minLength: 3, maxLength: 3 }),
        async (filePaths, overridePaths, fileSpecs, overrideSpecs) => {
          const { dirs } = treeShape([...filePaths, ...overridePaths]);
          for (const o of overridePaths) dirs.add(o);
          const files: OverlayFile[] = filePaths
            .filter((p) => !dirs.has(p))
            .map((p, i) => {
              const s = fileSpecs[i]!;
              return {
                path: `/${p}`, mode: s.mode, uid: s.uid, gid: s.gid, dirMode: s.dirMode, dirUid: s.dirUid, dirGid: s.dirGid,
                ...(s.symlink ? { linkTarget: s.linkTarget } : { content: bytes(s.content) }),
              };
            });
          const overrides: OverlayDirOverride[] = overridePaths.map((p, i) => ({ path: `/${p}`, ...overrideSpecs[i] }));

          // The model, written from the documented rules rather than from the implementation.
          const expected = new Map<string, ExtractedEntry>();
          const byBytes = [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
          for (const d of dirs) {
            const override = overrides.find((o) => o.path === `/${d}`);
            const needers = byBytes.filter((f) => f.path.startsWith(`/${d}/`));
            const pick = (own: number | undefined, field: 'dirMode' | 'dirUid' | 'dirGid', dflt: number) =>
              own ?? needers.find((f) => f[field] !== undefined)?.[field] ?? dflt;
            expected.set(d, {
              type: 'dir',
              mode: pick(override?.mode, 'dirMode', 0o755),
              uid: pick(override?.uid, 'dirUid', 0),
              gid: pick(override?.gid, 'dirGid', 0),
            });
          }
          for (const f of files) {
            const symlink = f.linkTarget !== undefined;
            expected.set(f.path.slice(1), {
              type: symlink ? 'symlink' : 'file',
              mode: f.mode ?? (symlink ? 0o777 : 0o644),
              uid: f.uid ?? 0,
              gid: f.gid ?? 0,
              content: f.content,
              linkTarget: f.linkTarget,
            });
          }
          const archive = gunzipSync(await buildOverlay(files, overrides));
          const got = await extract(archive);
          expect(differences(expected, got)).toEqual([]);
        },
      ),
      { numRuns: 40 },
    );
  }, 300_000);
});
