// The build store on a real directory: the build.json round trip, publishing, what a restart cleans,
// and records that fail validation being set aside (and logged) rather than trusted or deleted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, test } from 'vitest';
import { FileBuildStore, type BuildRecord } from '../../src/builds/build-store.js';
import { normalizeBuildRequest } from '../../src/builds/request.js';

const ID = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

function record(overrides: Partial<BuildRecord> = {}): BuildRecord {
  return {
    id: ID,
    state: 'pending',
    createdAt: '2026-01-02T03:04:05.678Z',
    request: normalizeBuildRequest(
      { kernel: 'vmlinuz-amd64', initramfs: 'initramfs-amd64.img', cmdline: 'console=ttyS0', architecture: 'amd64', files: [{ path: '/etc/x', contentBase64: 'eA==' }] },
      { maxFiles: 4 },
    ),
    bases: { kernelSha256: '1'.repeat(64), initramfsSha256: '2'.repeat(64) },
    ...overrides,
  };
}

/** A store on a fresh data directory, with every log line it writes. */
function freshStore(dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'uod-store-'))) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const store = new FileBuildStore(dataDir, pino({ level: 'info' }, sink));
  return { store, dataDir, lines, buildDir: (id: string) => path.join(dataDir, 'builds', id) };
}

/** Two produced files in a work directory, as the pipeline leaves them. */
async function produce(store: FileBuildStore, id: string) {
  const work = await store.createWorkDir(id);
  fs.writeFileSync(path.join(work, 'uki.efi'), 'UKI bytes');
  fs.writeFileSync(path.join(work, 'boot.iso'), 'ISO image bytes');
  return {
    work,
    produced: {
      uki: { path: path.join(work, 'uki.efi'), size: 9, sha256: 'c'.repeat(64) },
      iso: { path: path.join(work, 'boot.iso'), size: 15, sha256: 'd'.repeat(64) },
    },
  };
}

describe('FileBuildStore', () => {
  test('a written record reads back equal; a pending build has no artifacts to be intact', async () => {
    const { store } = freshStore();
    await store.readAll();
    await store.write(record());
    await store.write(record({ id: OTHER, state: 'failed', completedAt: '2026-01-02T03:04:06.000Z', error: 'objcopy failed' }));
    const all = (await store.readAll()).sort((a, b) => a.record.id.localeCompare(b.record.id));
    expect(all).toEqual([
      { record: record(), artifactsIntact: false },
      { record: record({ id: OTHER, state: 'failed', completedAt: '2026-01-02T03:04:06.000Z', error: 'objcopy failed' }), artifactsIntact: false },
    ]);
  });

  test('publish moves the produced files into the build directory and describes them; a truncated artifact is not intact', async () => {
    const { store, buildDir } = freshStore();
    await store.readAll();
    await store.write(record({ state: 'running' }));
    const { work, produced } = await produce(store, ID);
    const artifacts = await store.publish(ID, produced);
    expect(artifacts).toEqual({
      uki: { file: 'uki.efi', size: 9, sha256: 'c'.repeat(64) },
      iso: { file: 'boot.iso', size: 15, sha256: 'd'.repeat(64) },
    });
    expect(fs.readdirSync(work)).toEqual([]);
    expect(fs.readdirSync(buildDir(ID)).sort()).toEqual(['boot.iso', 'build.json', 'uki.efi']);
    expect(store.artifactPath(ID, 'iso')).toBe(path.join(buildDir(ID), 'boot.iso'));

    const completed = record({ state: 'completed', completedAt: '2026-01-02T03:04:07.000Z', artifacts });
    await store.write(completed);
    expect(await store.readAll()).toEqual([{ record: completed, artifactsIntact: true }]);
    fs.truncateSync(path.join(buildDir(ID), 'boot.iso'), 3);
    expect(await store.readAll()).toEqual([{ record: completed, artifactsIntact: false }]);

    await store.removeArtifacts(ID);
    expect(fs.readdirSync(buildDir(ID))).toEqual(['build.json']);
    await store.remove(ID);
    expect(fs.readdirSync(path.dirname(buildDir(ID)))).toEqual([]);
  });

  test('readAll empties tmp/, drops leftovers of interrupted record writes and a directory that never got a record', async () => {
    const { store, dataDir, buildDir, lines } = freshStore();
    await store.readAll();
    await store.write(record());
    await produce(store, ID);
    fs.writeFileSync(path.join(buildDir(ID), '.build.json.0123456789ab.tmp'), '{"torn');
    fs.mkdirSync(buildDir(OTHER));
    fs.mkdirSync(path.join(dataDir, 'builds', 'not-a-build-id'));

    expect((await store.readAll()).map((b) => b.record.id)).toEqual([ID]);
    expect(fs.readdirSync(path.join(dataDir, 'tmp'))).toEqual([]);
    expect(fs.readdirSync(buildDir(ID))).toEqual(['build.json']);
    expect(fs.readdirSync(path.join(dataDir, 'builds')).sort()).toEqual([ID, 'not-a-build-id']);
    expect(lines.filter((l) => l.level === 40).map((l) => [l.buildId, l.msg])).toEqual([[OTHER, 'discarding build directory without a record']]);
  });

  const completedWithout = { ...record({ state: 'completed', completedAt: '2026-01-02T03:04:07.000Z' }) };
  const badMode = record();
  badMode.request.files[0]!.mode = 0o10000;
  test.each([
    ['not JSON', '{"id": "aaaa', /^not JSON: /],
    ['an unknown state', JSON.stringify({ ...record(), state: 'done' }), /^state: /],
    ['an unknown field', JSON.stringify({ ...record(), owner: 'x' }), /^unknown field "owner"$/],
    ['another build\'s id', JSON.stringify(record({ id: OTHER })), new RegExp(`^id: is "${OTHER}", not the directory's name$`)],
    ['completed without artifacts', JSON.stringify(completedWithout), /^artifacts: must be present exactly when the state is "completed"$/],
    ['failed without an error', JSON.stringify(record({ state: 'failed' })), /^error: required when the state is "failed"$/],
    ['a file mode above 07777', JSON.stringify(badMode), /^request\.files\[0\]\.mode: /],
    ['a digest that is not hex', JSON.stringify(record({ bases: { kernelSha256: 'x', initramfsSha256: '2'.repeat(64) } })), /^bases\.kernelSha256: must be a sha256 in hex$/],
  ])('a record with %s is set aside in quarantine/ and logged, and the others load', async (_name, text, problem) => {
    const { store, dataDir, buildDir, lines } = freshStore();
    await store.readAll();
    await store.write(record({ id: OTHER }));
    fs.mkdirSync(buildDir(ID));
    fs.writeFileSync(path.join(buildDir(ID), 'build.json'), text);
    fs.writeFileSync(path.join(buildDir(ID), 'uki.efi'), 'kept for inspection');

    expect((await store.readAll()).map((b) => b.record.id)).toEqual([OTHER]);
    expect(fs.existsSync(buildDir(ID))).toBe(false);
    const quarantined = fs.readdirSync(path.join(dataDir, 'quarantine'));
    expect(quarantined).toHaveLength(1);
    expect(quarantined[0]).toMatch(new RegExp(`^${ID}\\.\\d+$`));
    const moved = path.join(dataDir, 'quarantine', quarantined[0]!);
    expect(fs.readFileSync(path.join(moved, 'build.json'), 'utf8')).toBe(text);
    expect(fs.readFileSync(path.join(moved, 'uki.efi'), 'utf8')).toBe('kept for inspection');

    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ buildId: ID, msg: 'build record is not valid; set aside', movedTo: moved });
    expect(errors[0]!.problem).toMatch(problem);
    // set aside for good: the next start neither sees it nor logs it again
    expect((await store.readAll()).map((b) => b.record.id)).toEqual([OTHER]);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
  });
});
