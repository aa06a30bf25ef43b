import { describe, expect, test } from 'vitest';
import { computeBuildId } from '../../src/builds/build-id.js';
import { canonicalJson, normalizeBuildRequest, RequestError } from '../../src/builds/request.js';

const limits = { maxFiles: 16 };
const bases = { kernelSha256: 'a'.repeat(64), initramfsSha256: 'b'.repeat(64) };
const base = { kernel: 'vmlinuz-amd64', initramfs: 'initramfs-amd64.img', cmdline: 'console=ttyS0', architecture: 'amd64' };
const idOf = (body: unknown) => computeBuildId(normalizeBuildRequest(body, limits), bases);

function rejects(body: unknown, fragment: string | RegExp): void {
  let message = '';
  try {
    normalizeBuildRequest(body, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(RequestError);
    message = (err as Error).message;
  }
  expect(message, `expected a rejection for ${JSON.stringify(body).slice(0, 200)}`).not.toBe('');
  if (typeof fragment === 'string') expect(message).toContain(fragment);
  else expect(message).toMatch(fragment);
}

describe('normalization and id stability', () => {
  test('key order does not change the id', () => {
    const a = { ...base, files: [{ path: '/a', contentBase64: 'QQ==', mode: '0600', uid: 1 }] };
    const b = { files: [{ uid: 1, mode: '0600', contentBase64: 'QQ==', path: '/a' }], architecture: 'amd64', cmdline: 'console=ttyS0', initramfs: 'initramfs-amd64.img', kernel: 'vmlinuz-amd64' };
    expect(idOf(a)).toBe(idOf(b));
  });

  test('file and override order does not change the id', () => {
    const f1 = { path: '/etc/a', contentBase64: '' };
    const f2 = { path: '/root/.ssh/authorized_keys', contentBase64: 'a2V5' };
    const d1 = { path: '/root/.ssh', mode: '0700' };
    const d2 = { path: '/etc', mode: '0755' };
    expect(idOf({ ...base, files: [f1, f2], dirOverrides: [d1, d2] })).toBe(idOf({ ...base, files: [f2, f1], dirOverrides: [d2, d1] }));
  });

  test('defaults are applied before hashing', () => {
    const implicit = { ...base, files: [{ path: '/a', contentBase64: 'QQ==' }, { path: '/l', linkTarget: '/a' }] };
    const explicit = {
      ...base,
      tlsArtifacts: false,
      dirOverrides: [],
      files: [
        { path: '/a', contentBase64: 'QQ==', mode: '0644', uid: 0, gid: 0, dirMode: '0755', dirUid: 0, dirGid: 0 },
        { path: '/l', linkTarget: '/a', mode: '777' },
      ],
    };
    expect(idOf(implicit)).toBe(idOf(explicit));
    expect(idOf(base)).toBe(idOf({ ...base, files: [], dirOverrides: [] }));
  });

  test('every semantic field changes the id', () => {
    const reference = { ...base, files: [{ path: '/a', contentBase64: 'QQ==' }], dirOverrides: [{ path: '/d' }] };
    const variants: unknown[] = [
      { ...reference, kernel: 'vmlinuz-other' },
      { ...reference, initramfs: 'other.img' },
      { ...reference, cmdline: 'console=ttyS1' },
      { ...reference, architecture: 'arm64' },
      { ...reference, tlsArtifacts: true },
      { ...reference, files: [{ path: '/b', contentBase64: 'QQ==' }] },
      { ...reference, files: [{ path: '/a', contentBase64: 'Qg==' }] },
      { ...reference, files: [{ path: '/a', contentBase64: 'QQ==', mode: '0600' }] },
      { ...reference, files: [{ path: '/a', contentBase64: 'QQ==', uid: 1 }] },
      { ...reference, files: [{ path: '/a', contentBase64: 'QQ==', gid: 1 }] },
      { ...reference, files: [{ path: '/a', linkTarget: '/x' }] },
      { ...reference, dirOverrides: [{ path: '/d', mode: '0700' }] },
      { ...reference, dirOverrides: [] },
    ];
    const ids = new Set([idOf(reference), ...variants.map(idOf)]);
    expect(ids.size).toBe(variants.length + 1);
    const other = computeBuildId(normalizeBuildRequest(reference, limits), { ...bases, kernelSha256: 'c'.repeat(64) });
    expect(other).not.toBe(idOf(reference));
  });

  test('contentBase64 of a symlink is ignored', () => {
    expect(idOf({ ...base, files: [{ path: '/l', linkTarget: '/t', contentBase64: 'QQ==' }] })).toBe(
      idOf({ ...base, files: [{ path: '/l', linkTarget: '/t' }] }),
    );
  });

  test('canonical JSON sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}');
  });

  test('ids are 64 lowercase hex', () => {
    expect(idOf(base)).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('validation names the field', () => {
  const cases: Array<[string, unknown, string | RegExp]> = [
    ['missing kernel', { ...base, kernel: undefined }, 'kernel'],
    ['kernel path traversal', { ...base, kernel: '../etc/passwd' }, 'kernel: must be a plain file name'],
    ['kernel with slash', { ...base, kernel: 'a/b' }, 'kernel'],
    ['hidden initramfs', { ...base, initramfs: '.hidden' }, 'initramfs'],
    ['bad architecture', { ...base, architecture: 'riscv64' }, 'architecture: must be "amd64" or "arm64"'],
    ['cmdline newline', { ...base, cmdline: 'a\nb' }, 'cmdline: must be printable'],
    ['cmdline NUL', { ...base, cmdline: 'a\u0000b' }, 'cmdline'],
    ['cmdline too long', { ...base, cmdline: 'x'.repeat(2049) }, 'cmdline: must be at most 2048 bytes'],
    ['unknown top-level field', { ...base, colour: 'blue' }, 'unknown field "colour"'],
    ['unknown file field', { ...base, files: [{ path: '/a', contentBase64: '', owner: 'root' }] }, 'files[0]: unknown field "owner"'],
    ['relative path', { ...base, files: [{ path: 'etc/a', contentBase64: '' }] }, 'files[0].path: must be absolute'],
    ['root path', { ...base, files: [{ path: '/', contentBase64: '' }] }, 'files[0].path: must not be "/"'],
    ['dotdot', { ...base, files: [{ path: '/etc/../a', contentBase64: '' }] }, 'files[0].path: must not contain ".."'],
    ['double slash', { ...base, files: [{ path: '/etc//a', contentBase64: '' }] }, 'files[0].path: must be normalized'],
    ['trailing slash', { ...base, files: [{ path: '/etc/a/', contentBase64: '' }] }, 'files[0].path: must be normalized'],
    ['dot segment', { ...base, files: [{ path: '/etc/./a', contentBase64: '' }] }, 'files[0].path: must be normalized'],
    ['NUL in path', { ...base, files: [{ path: '/a\u0000b', contentBase64: '' }] }, 'files[0].path: must not contain NUL'],
    ['missing content', { ...base, files: [{ path: '/a' }] }, 'files[0].contentBase64: required'],
    ['bad base64', { ...base, files: [{ path: '/a', contentBase64: 'not base64!' }] }, 'files[0].contentBase64: must be valid base64'],
    ['non-canonical base64', { ...base, files: [{ path: '/a', contentBase64: 'QR==' }] }, 'files[0].contentBase64: must be canonical base64'],
    ['bad mode', { ...base, files: [{ path: '/a', contentBase64: '', mode: '0999' }] }, 'files[0].mode'],
    ['mode too big', { ...base, files: [{ path: '/a', contentBase64: '', mode: '017777' }] }, 'files[0].mode'],
    ['numeric mode', { ...base, files: [{ path: '/a', contentBase64: '', mode: 420 }] }, 'files[0].mode'],
    ['negative uid', { ...base, files: [{ path: '/a', contentBase64: '', uid: -1 }] }, 'files[0].uid: must be >= 0'],
    ['uid too big', { ...base, files: [{ path: '/a', contentBase64: '', uid: 2 ** 32 }] }, 'files[0].uid'],
    ['fractional gid', { ...base, files: [{ path: '/a', contentBase64: '', gid: 1.5 }] }, 'files[0].gid'],
    ['bad dirMode', { ...base, files: [{ path: '/a/b', contentBase64: '', dirMode: 'rwx' }] }, 'files[0].dirMode'],
    ['duplicate paths', { ...base, files: [{ path: '/a', contentBase64: '' }, { path: '/a', contentBase64: '' }] }, 'files[1].path: duplicate of files[0].path'],
    ['file is a parent', { ...base, files: [{ path: '/a', contentBase64: '' }, { path: '/a/b', contentBase64: '' }] }, /files\[1\]\.path: "\/a\/b" lies under files\[0\]/],
    ['override is a file', { ...base, files: [{ path: '/a', contentBase64: '' }], dirOverrides: [{ path: '/a' }] }, 'dirOverrides[0].path: "/a" is also files[0]'],
    ['override under a file', { ...base, files: [{ path: '/a', contentBase64: '' }], dirOverrides: [{ path: '/a/d' }] }, 'dirOverrides[0].path'],
    ['duplicate overrides', { ...base, dirOverrides: [{ path: '/d' }, { path: '/d' }] }, 'dirOverrides[1].path: duplicate'],
    ['too many files', { ...base, files: Array.from({ length: 17 }, (_, i) => ({ path: `/f${i}`, contentBase64: '' })) }, 'files: must have at most 16 entries'],
    ['files not an array', { ...base, files: {} }, 'files'],
    ['tlsArtifacts string', { ...base, tlsArtifacts: 'yes' }, 'tlsArtifacts'],
    ['body is an array', [base], 'body: must be a JSON object'],
    ['body is null', null, 'body: must be a JSON object'],
    ['empty linkTarget', { ...base, files: [{ path: '/l', linkTarget: '' }] }, 'files[0].linkTarget'],
  ];
  test.each(cases)('%s', (_name, body, fragment) => rejects(body, fragment));

  test('accepts a realistic inspection request', () => {
    const n = normalizeBuildRequest(
      {
        ...base,
        files: [
          { path: '/var/lib/cloud/seed/nocloud/meta-data', contentBase64: 'aW5zdGFuY2UtaWQ6IHgK', mode: '0644' },
          { path: '/root/.ssh/authorized_keys', contentBase64: 'c3NoLWVkMjU1MTkgQUFBQQ==', mode: '0600' },
          { path: '/usr/local/bin/python', linkTarget: '/usr/bin/python3' },
        ],
        dirOverrides: [{ path: '/root/.ssh', mode: '0700' }],
      },
      limits,
    );
    expect(n.files.map((f) => f.path)).toEqual(['/root/.ssh/authorized_keys', '/usr/local/bin/python', '/var/lib/cloud/seed/nocloud/meta-data']);
    expect(n.files[1]).toMatchObject({ type: 'symlink', mode: 0o777, linkTarget: '/usr/bin/python3' });
    expect(n.dirOverrides).toEqual([{ path: '/root/.ssh', mode: 0o700, uid: 0, gid: 0 }]);
  });
});
