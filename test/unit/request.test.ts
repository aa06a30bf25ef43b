import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { BUILDER_VERSION, computeBuildId } from '../../src/builds/build-id.js';
import { ImagePipeline } from '../../src/builds/pipeline.js';
import { canonicalJson, normalizeBuildRequest, RequestError } from '../../src/builds/request.js';

const limits = { maxFiles: 16 };
const bases = { kernelSha256: 'a'.repeat(64), initramfsSha256: 'b'.repeat(64) };
const base = { kernel: 'vmlinuz-amd64', initramfs: 'initramfs-amd64.img', cmdline: 'console=ttyS0', architecture: 'amd64' };
const idOf = (body: unknown) => computeBuildId(normalizeBuildRequest(body, limits), bases);

function rejects(body: unknown, expected: string): void {
  let message = '';
  try {
    normalizeBuildRequest(body, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(RequestError);
    message = (err as Error).message;
  }
  expect(message, `expected a rejection for ${JSON.stringify(body).slice(0, 200)}`).not.toBe('');
  expect(message).toBe(expected);
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

describe('golden build id', () => {
  // If this fails, the id of an existing request changed: bump BUILDER_VERSION in src/builds/build-id.ts
  // (so old builds are never answered for new ones), then update the literals here.
  const body = {
    kernel: 'vmlinuz-amd64',
    initramfs: 'initramfs-amd64.img',
    cmdline: 'console=ttyS0,115200 quiet',
    architecture: 'amd64',
    files: [
      { path: '/root/.ssh/authorized_keys', contentBase64: 'c3NoLWVkMjU1MTkgQUFBQSB0ZXN0Cg==', mode: '0600' },
      { path: '/usr/local/bin/python', linkTarget: '/usr/bin/python3' },
      { path: '/etc/hostname', contentBase64: 'bm9kZTEK', uid: 0, gid: 0, dirMode: '0755' },
    ],
    dirOverrides: [{ path: '/root/.ssh', mode: '0700' }, { path: '/tmp', mode: '1777' }],
  };
  const goldenBases = { kernelSha256: '0123456789abcdef'.repeat(4), initramfsSha256: 'fedcba9876543210'.repeat(4) };
  const document =
    '{"bases":{"initramfsSha256":"' + 'fedcba9876543210'.repeat(4) + '","kernelSha256":"' + '0123456789abcdef'.repeat(4) + '"},' +
    '"builder":"uki-on-demand/2",' +
    '"request":{"architecture":"amd64","cmdline":"console=ttyS0,115200 quiet","dirOverrides":[' +
    '{"gid":0,"mode":448,"path":"/root/.ssh","uid":0},{"gid":0,"mode":1023,"path":"/tmp","uid":0}],"files":[' +
    '{"contentBase64":"bm9kZTEK","dirGid":0,"dirMode":493,"dirUid":0,"gid":0,"mode":420,"path":"/etc/hostname","type":"file","uid":0},' +
    '{"contentBase64":"c3NoLWVkMjU1MTkgQUFBQSB0ZXN0Cg==","dirGid":0,"dirMode":493,"dirUid":0,"gid":0,"mode":384,"path":"/root/.ssh/authorized_keys","type":"file","uid":0},' +
    '{"dirGid":0,"dirMode":493,"dirUid":0,"gid":0,"linkTarget":"/usr/bin/python3","mode":511,"path":"/usr/local/bin/python","type":"symlink","uid":0}],' +
    '"initramfs":"initramfs-amd64.img","kernel":"vmlinuz-amd64","tlsArtifacts":false}}';

  test('a fixed request and fixed base digests give a fixed id', () => {
    expect(computeBuildId(normalizeBuildRequest(body, limits), goldenBases)).toBe('5b6006e8fceb1e8769d9cda6614becb73fdc82a2db981d84a37467394795016b');
  });

  test('the id is the sha256 of the canonical document: builder version, normalized request, base digests', () => {
    const request = normalizeBuildRequest(body, limits);
    expect(canonicalJson({ builder: BUILDER_VERSION, request, bases: goldenBases })).toBe(document);
    expect(createHash('sha256').update(document).digest('hex')).toBe('5b6006e8fceb1e8769d9cda6614becb73fdc82a2db981d84a37467394795016b');
  });

  test("the pipeline's variant (its UKI writer) is part of the document, after the request", () => {
    const request = normalizeBuildRequest(body, limits);
    expect(new ImagePipeline().variant).toBe('uki-writer=direct');
    expect(new ImagePipeline({ ukiWriter: 'objcopy' }).variant).toBe('uki-writer=objcopy');
    expect(canonicalJson({ builder: BUILDER_VERSION, request, bases: goldenBases, variant: 'uki-writer=direct' }))
      .toBe(document.slice(0, -1) + ',"variant":"uki-writer=direct"}');
    expect(computeBuildId(request, goldenBases, 'uki-writer=direct')).toBe('80551c454da4f120f29278abcb985ea5908e0d1798eb8212e51bd1bb837d64bb');
    expect(computeBuildId(request, goldenBases, 'uki-writer=objcopy')).toBe('d3f396020be814417b272f8576e76a0a842cadc1acaecb7a1d58e9fea97ce513');
  });
});

describe('validation names the field', () => {
  const cases: Array<[string, unknown, string]> = [
    ['missing kernel', { ...base, kernel: undefined }, 'kernel: Invalid input: expected string, received undefined'],
    ['kernel path traversal', { ...base, kernel: '../etc/passwd' }, 'kernel: must be a plain file name ([A-Za-z0-9][A-Za-z0-9._-]*)'],
    ['kernel with slash', { ...base, kernel: 'a/b' }, 'kernel: must be a plain file name ([A-Za-z0-9][A-Za-z0-9._-]*)'],
    ['hidden initramfs', { ...base, initramfs: '.hidden' }, 'initramfs: must be a plain file name ([A-Za-z0-9][A-Za-z0-9._-]*)'],
    ['bad architecture', { ...base, architecture: 'riscv64' }, 'architecture: must be "amd64" or "arm64"'],
    ['cmdline newline', { ...base, cmdline: 'a\nb' }, 'cmdline: must be printable ASCII (no NUL, newline or control characters)'],
    ['cmdline NUL', { ...base, cmdline: 'a\u0000b' }, 'cmdline: must be printable ASCII (no NUL, newline or control characters)'],
    ['cmdline too long', { ...base, cmdline: 'x'.repeat(2049) }, 'cmdline: must be at most 2048 bytes'],
    ['unknown top-level field', { ...base, colour: 'blue' }, 'unknown field "colour"'],
    ['unknown file field', { ...base, files: [{ path: '/a', contentBase64: '', owner: 'root' }] }, 'files[0]: unknown field "owner"'],
    ['relative path', { ...base, files: [{ path: 'etc/a', contentBase64: '' }] }, 'files[0].path: must be absolute (start with "/")'],
    ['root path', { ...base, files: [{ path: '/', contentBase64: '' }] }, 'files[0].path: must not be "/"'],
    ['dotdot', { ...base, files: [{ path: '/etc/../a', contentBase64: '' }] }, 'files[0].path: must not contain ".."'],
    ['double slash', { ...base, files: [{ path: '/etc//a', contentBase64: '' }] }, 'files[0].path: must be normalized (no "//", "/./" or trailing "/")'],
    ['trailing slash', { ...base, files: [{ path: '/etc/a/', contentBase64: '' }] }, 'files[0].path: must be normalized (no "//", "/./" or trailing "/")'],
    ['dot segment', { ...base, files: [{ path: '/etc/./a', contentBase64: '' }] }, 'files[0].path: must be normalized (no "//", "/./" or trailing "/")'],
    ['NUL in path', { ...base, files: [{ path: '/a\u0000b', contentBase64: '' }] }, 'files[0].path: must not contain NUL'],
    ['missing content', { ...base, files: [{ path: '/a' }] }, 'files[0].contentBase64: required for a regular file (or set linkTarget for a symlink)'],
    ['bad base64', { ...base, files: [{ path: '/a', contentBase64: 'not base64!' }] }, 'files[0].contentBase64: must be valid base64'],
    ['non-canonical base64', { ...base, files: [{ path: '/a', contentBase64: 'QR==' }] }, 'files[0].contentBase64: must be canonical base64'],
    ['bad mode', { ...base, files: [{ path: '/a', contentBase64: '', mode: '0999' }] }, 'files[0].mode: must be an octal string from "0" to "07777", e.g. "0644"'],
    ['mode too big', { ...base, files: [{ path: '/a', contentBase64: '', mode: '017777' }] }, 'files[0].mode: must be an octal string from "0" to "07777", e.g. "0644"'],
    ['numeric mode', { ...base, files: [{ path: '/a', contentBase64: '', mode: 420 }] }, 'files[0].mode: Invalid input: expected string, received number'],
    ['negative uid', { ...base, files: [{ path: '/a', contentBase64: '', uid: -1 }] }, 'files[0].uid: must be >= 0'],
    ['uid too big', { ...base, files: [{ path: '/a', contentBase64: '', uid: 2 ** 32 }] }, 'files[0].uid: must be <= 4294967295'],
    ['fractional gid', { ...base, files: [{ path: '/a', contentBase64: '', gid: 1.5 }] }, 'files[0].gid: must be an integer'],
    ['bad dirMode', { ...base, files: [{ path: '/a/b', contentBase64: '', dirMode: 'rwx' }] }, 'files[0].dirMode: must be an octal string from "0" to "07777", e.g. "0644"'],
    ['duplicate paths', { ...base, files: [{ path: '/a', contentBase64: '' }, { path: '/a', contentBase64: '' }] }, 'files[1].path: duplicate of files[0].path "/a"'],
    ['file is a parent', { ...base, files: [{ path: '/a', contentBase64: '' }, { path: '/a/b', contentBase64: '' }] }, 'files[1].path: "/a/b" lies under files[0] "/a", which is a file, not a directory'],
    ['override is a file', { ...base, files: [{ path: '/a', contentBase64: '' }], dirOverrides: [{ path: '/a' }] }, 'dirOverrides[0].path: "/a" is also files[0], a file cannot be a directory'],
    ['override under a file', { ...base, files: [{ path: '/a', contentBase64: '' }], dirOverrides: [{ path: '/a/d' }] }, 'dirOverrides[0].path: "/a/d" lies under files[0] "/a", which is a file, not a directory'],
    ['duplicate overrides', { ...base, dirOverrides: [{ path: '/d' }, { path: '/d' }] }, 'dirOverrides[1].path: duplicate of dirOverrides[0].path "/d"'],
    ['too many files', { ...base, files: Array.from({ length: 17 }, (_, i) => ({ path: `/f${i}`, contentBase64: '' })) }, 'files: must have at most 16 entries'],
    ['files not an array', { ...base, files: {} }, 'files: Invalid input: expected array, received object'],
    ['tlsArtifacts string', { ...base, tlsArtifacts: 'yes' }, 'tlsArtifacts: Invalid input: expected boolean, received string'],
    ['body is an array', [base], 'body: must be a JSON object'],
    ['body is null', null, 'body: must be a JSON object'],
    ['empty linkTarget', { ...base, files: [{ path: '/l', linkTarget: '' }] }, 'files[0].linkTarget: must not be empty'],
  ];
  test.each(cases)('%s', (_name, body, message) => rejects(body, message));

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
