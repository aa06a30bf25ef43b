// Property: the build id (normalizeBuildRequest + computeBuildId) depends on what a request means and on
// nothing else. Key order, list order and spelled-out defaults never change it; any change to a
// semantic field (or to a base artifact's digest) always does.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { computeBuildId } from '../../src/builds/build-id.js';
import { normalizeBuildRequest } from '../../src/builds/request.js';

const LIMITS = { maxFiles: 64 };
const BASES = { kernelSha256: 'a'.repeat(64), initramfsSha256: 'b'.repeat(64) };

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface FileIn {
  path: string;
  contentBase64?: string;
  linkTarget?: string;
  mode?: string;
  uid?: number;
  gid?: number;
  dirMode?: string;
  dirUid?: number;
  dirGid?: number;
}
interface OverrideIn {
  path: string;
  mode?: string;
  uid?: number;
  gid?: number;
}
interface RequestIn {
  kernel: string;
  initramfs: string;
  cmdline: string;
  architecture: 'amd64' | 'arm64';
  files?: FileIn[];
  dirOverrides?: OverrideIn[];
  tlsArtifacts?: boolean;
}

const idOf = (body: unknown, bases = BASES) => computeBuildId(normalizeBuildRequest(body, LIMITS), bases);

const segment = fc.stringMatching(/^[a-z0-9_-]{1,3}$|^[é✓中 .]{1,2}$/).filter((s) => s !== '.' && s !== '..');
const absPath = fc.array(segment, { minLength: 1, maxLength: 3 }).map((p) => `/${p.join('/')}`);
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/);
const octal = fc.integer({ min: 0, max: 0o7777 });
const owner = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const base64 = fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('base64'));

const fileAttrs = fc.record(
  {
    symlink: fc.boolean(),
    contentBase64: base64,
    linkTarget: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0')),
    mode: octal,
    uid: owner,
    gid: owner,
    dirMode: octal,
    dirUid: owner,
    dirGid: owner,
  },
  { requiredKeys: ['symlink', 'contentBase64', 'linkTarget'] },
);
const overrideAttrs = fc.record({ mode: octal, uid: owner, gid: owner }, { requiredKeys: [] });

/** A valid request: unique paths, no file where a directory must be. Modes are spelled "0NNN". */
const request: fc.Arbitrary<RequestIn> = fc
  .record({
    kernel: name,
    initramfs: name,
    cmdline: fc.stringMatching(/^[\x20-\x7e]{0,60}$/),
    architecture: fc.constantFrom('amd64' as const, 'arm64' as const),
    filePaths: fc.uniqueArray(absPath, { maxLength: 6 }),
    overridePaths: fc.uniqueArray(absPath, { maxLength: 3 }),
    fileAttrs: fc.array(fileAttrs, { minLength: 6, maxLength: 6 }),
    overrideAttrs: fc.array(overrideAttrs, { minLength: 3, maxLength: 3 }),
    tlsArtifacts: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map((r) => {
    const dirs = new Set<string>(r.overridePaths);
    for (const p of [...r.filePaths, ...r.overridePaths]) {
      for (let q = p.slice(0, p.lastIndexOf('/')); q; q = q.slice(0, q.lastIndexOf('/'))) dirs.add(q);
    }
    const oct = (n: number | undefined) => (n === undefined ? undefined : `0${n.toString(8)}`);
    const files: FileIn[] = r.filePaths.filter((p) => !dirs.has(p)).map((path, i) => {
      const a = r.fileAttrs[i]!;
      const f: FileIn = { path, mode: oct(a.mode), uid: a.uid, gid: a.gid, dirMode: oct(a.dirMode), dirUid: a.dirUid, dirGid: a.dirGid };
      if (a.symlink) f.linkTarget = a.linkTarget;
      else f.contentBase64 = a.contentBase64;
      return dropUndefined(f);
    });
    const dirOverrides: OverrideIn[] = r.overridePaths.map((path, i) => dropUndefined({ path, ...r.overrideAttrs[i], mode: oct(r.overrideAttrs[i]!.mode) }));
    return dropUndefined({ kernel: r.kernel, initramfs: r.initramfs, cmdline: r.cmdline, architecture: r.architecture, files, dirOverrides, tlsArtifacts: r.tlsArtifacts });
  });

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** The same request as another client might send it: keys in any order, lists in any order, defaults spelled out or left out. */
function respell(req: RequestIn, random: () => number): Json {
  const shuffle = <T>(xs: T[]): T[] => {
    const out = [...xs];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  };
  const reorder = (v: Json): Json => {
    if (Array.isArray(v)) return v.map(reorder);
    if (v !== null && typeof v === 'object') return Object.fromEntries(shuffle(Object.entries(v)).map(([k, x]) => [k, reorder(x)]));
    return v;
  };
  const coin = () => random() < 0.5;
  // "0644", "644" and "00644"-free variants: the same number
  const modeSpelling = (m: string | undefined) => (m === undefined ? undefined : coin() ? m : String(parseInt(m, 8).toString(8)));
  const files = (req.files ?? []).map((f) => {
    const symlink = f.linkTarget !== undefined;
    const g: FileIn = { ...f, mode: modeSpelling(f.mode), dirMode: modeSpelling(f.dirMode) };
    // defaults written out, or dropped when they equal the default
    const defaults: Array<[keyof FileIn, unknown]> = [['mode', symlink ? '0777' : '0644'], ['uid', 0], ['gid', 0], ['dirMode', '0755'], ['dirUid', 0], ['dirGid', 0]];
    for (const [k, d] of defaults) {
      const same = g[k] === undefined || (typeof d === 'string' ? parseInt(String(g[k]), 8) === parseInt(d, 8) : g[k] === d);
      if (same) (g as unknown as Record<string, unknown>)[k] = coin() ? d : undefined;
    }
    // contentBase64 is documented as ignored for symlinks
    if (symlink && coin()) g.contentBase64 = Buffer.from('ignored').toString('base64');
    return dropUndefined(g);
  });
  const overrides = (req.dirOverrides ?? []).map((o) => dropUndefined({ ...o, mode: modeSpelling(o.mode) ?? (coin() ? '0755' : undefined), uid: o.uid ?? (coin() ? 0 : undefined) }));
  const out: Record<string, unknown> = { ...req, files: shuffle(files), dirOverrides: shuffle(overrides) };
  if (out.tlsArtifacts === undefined && coin()) out.tlsArtifacts = false;
  if ((out.files as unknown[]).length === 0 && coin()) delete out.files;
  if ((out.dirOverrides as unknown[]).length === 0 && coin()) delete out.dirOverrides;
  return reorder(JSON.parse(JSON.stringify(out)) as Json);
}

type Mutation = (r: RequestIn) => RequestIn | null;
const flipMode = (m: string | undefined, dflt: number) => `0${(((m === undefined ? dflt : parseInt(m, 8)) ^ 0o1) & 0o7777).toString(8)}`;
const onFile = (i: number, change: (f: FileIn) => FileIn | null): Mutation => (r) => {
  const files = r.files ?? [];
  if (files.length === 0) return null;
  const k = i % files.length;
  const changed = change(files[k]!);
  if (!changed) return null;
  return { ...r, files: files.map((f, j) => (j === k ? changed : f)) };
};
const onOverride = (i: number, change: (o: OverrideIn) => OverrideIn): Mutation => (r) => {
  const list = r.dirOverrides ?? [];
  if (list.length === 0) return null;
  const k = i % list.length;
  return { ...r, dirOverrides: list.map((o, j) => (j === k ? change(o) : o)) };
};

/** Each changes one thing the output depends on; null when it does not apply to this request. */
const MUTATIONS: Array<[string, (i: number) => Mutation]> = [
  ['kernel', () => (r) => ({ ...r, kernel: `${r.kernel}x` })],
  ['initramfs', () => (r) => ({ ...r, initramfs: `${r.initramfs}x` })],
  ['cmdline', () => (r) => ({ ...r, cmdline: `${r.cmdline} ` })],
  ['architecture', () => (r) => ({ ...r, architecture: r.architecture === 'amd64' ? 'arm64' : 'amd64' })],
  ['tlsArtifacts', () => (r) => ({ ...r, tlsArtifacts: !r.tlsArtifacts })],
  ['file content', (i) => onFile(i, (f) => (f.linkTarget !== undefined ? null : { ...f, contentBase64: Buffer.concat([Buffer.from(f.contentBase64 ?? '', 'base64'), Buffer.from([i & 255])]).toString('base64') }))],
  ['symlink target', (i) => onFile(i, (f) => (f.linkTarget === undefined ? null : { ...f, linkTarget: `${f.linkTarget}x` }))],
  ['file becomes symlink', (i) => onFile(i, (f) => (f.linkTarget !== undefined ? null : { ...f, contentBase64: undefined, linkTarget: '/target' }))],
  ['file mode', (i) => onFile(i, (f) => ({ ...f, mode: flipMode(f.mode, f.linkTarget !== undefined ? 0o777 : 0o644) }))],
  ['file uid', (i) => onFile(i, (f) => ({ ...f, uid: ((f.uid ?? 0) + 1) % 2 ** 32 }))],
  ['file gid', (i) => onFile(i, (f) => ({ ...f, gid: ((f.gid ?? 0) + 1) % 2 ** 32 }))],
  ['file dirMode', (i) => onFile(i, (f) => ({ ...f, dirMode: flipMode(f.dirMode, 0o755) }))],
  ['file dirUid', (i) => onFile(i, (f) => ({ ...f, dirUid: ((f.dirUid ?? 0) + 1) % 2 ** 32 }))],
  ['file dirGid', (i) => onFile(i, (f) => ({ ...f, dirGid: ((f.dirGid ?? 0) + 1) % 2 ** 32 }))],
  ['file path', (i) => onFile(i, (f) => ({ ...f, path: `${f.path}~` }))],
  ['file removed', (i) => (r) => (r.files?.length ? { ...r, files: r.files.filter((_, j) => j !== i % r.files!.length) } : null)],
  ['file added', () => (r) => ({ ...r, files: [...(r.files ?? []), { path: '/added-by-mutation', contentBase64: '' }] })],
  ['override mode', (i) => onOverride(i, (o) => ({ ...o, mode: flipMode(o.mode, 0o755) }))],
  ['override uid', (i) => onOverride(i, (o) => ({ ...o, uid: ((o.uid ?? 0) + 1) % 2 ** 32 }))],
  ['override gid', (i) => onOverride(i, (o) => ({ ...o, gid: ((o.gid ?? 0) + 1) % 2 ** 32 }))],
  ['override path', (i) => onOverride(i, (o) => ({ ...o, path: `${o.path}~` }))],
  ['override added', () => (r) => ({ ...r, dirOverrides: [...(r.dirOverrides ?? []), { path: '/added-override' }] })],
];

describe('build id (property)', () => {
  test('is invariant under key order, file and override order, and spelled-out defaults', () => {
    fc.assert(
      fc.property(request, fc.nat(), (req, seed) => {
        let s = seed;
        const random = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
        const id = idOf(req);
        expect(id).toMatch(/^[0-9a-f]{64}$/);
        for (let k = 0; k < 3; k++) {
          const variant = respell(req, random);
          expect(idOf(variant), JSON.stringify(variant)).toBe(id);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('changes with any semantic field, and with the digest of either base artifact', () => {
    fc.assert(
      fc.property(request, fc.integer({ min: 0, max: MUTATIONS.length - 1 }), fc.nat(100), (req, which, i) => {
        const id = idOf(req);
        const [label, make] = MUTATIONS[which]!;
        const mutated = make(i)(req);
        fc.pre(mutated !== null);
        // the mutated request is still valid (a rejected one proves nothing about the id)
        let other: string;
        try {
          other = idOf(dropUndefinedDeep(mutated));
        } catch {
          fc.pre(false);
          return;
        }
        expect(other, `${label} did not change the id`).not.toBe(id);
        expect(idOf(req, { ...BASES, kernelSha256: 'c'.repeat(64) })).not.toBe(id);
        expect(idOf(req, { ...BASES, initramfsSha256: 'c'.repeat(64) })).not.toBe(id);
      }),
      { numRuns: 600 },
    );
  });
});

function dropUndefinedDeep<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
