// The service as a process: command-line errors, graceful restarts and crashes keep every build and
// every checkin; unfinished builds resume.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { api, BASE_ARTIFACTS, CLI, startChild, tempDir, tinyRequest, waitForBuild } from '../support/service.js';
import { checkEveryResponse } from '../support/openapi.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

requireBaseArtifacts();
const run = promisify(execFile);

async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 10_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('command line', () => {
  test('--help lists every option with its environment variable', async () => {
    const res = await cli(['serve', '--help']);
    expect(res.code).toBe(0);
    for (const word of ['--listen', '--tls-listen', '--tls-cert', '--tls-key', '--public-url', '--public-tls-url', '--data-dir',
      '--base-artifacts', '--trusted-cidrs', '--build-concurrency', '--queue-size', 'UOD_LISTEN', 'UOD_TRUSTED_CIDRS', 'UOD_QUEUE_SIZE']) {
      expect(res.stdout).toContain(word);
    }
  });

  test.each([
    [['serve', '--listen', '127.0.0.1:99999'], {}, '--listen'],
    [['serve', '--trusted-cidrs', '10.0.0.0/40'], {}, '--trusted-cidrs'],
    [['serve', '--build-concurrency', 'many'], {}, '--build-concurrency'],
    [['serve'], { UOD_QUEUE_SIZE: 'lots' }, 'UOD_QUEUE_SIZE'],
    [['serve', '--tls-listen', '127.0.0.1:0'], {}, '--tls-listen'],
    [['serve', '--no-such-flag'], {}, '--no-such-flag'],
  ])('%j stops start-up with one line naming the option', async (args, env, name) => {
    const res = await cli(args, env as Record<string, string>);
    expect(res.code).toBe(2);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^uki-on-demand: /);
    expect(lines[0]).toContain(name);
  });
});

describe('restarts', () => {
  test('a graceful restart keeps completed builds, their artifacts and every checkin', async () => {
    const first = await startChild();
    let second;
    try {
      const res = await api(`${first.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ cmdline: 'console=ttyS0 restart' }) });
      const done = await waitForBuild(first.url, res.body.id);
      const before = await api(`${first.url}/artifacts/${res.body.id}/boot.iso`, { method: 'HEAD' });
      await api(`${first.url}/api/v1/checkins/reported`, { method: 'POST', json: { addresses: [] } });
      await api(`${first.url}/api/v1/checkins/reported`, { method: 'PUT', json: { addresses: ['192.0.2.44'] } });
      await api(`${first.url}/api/v1/checkins/registered-only`, { method: 'POST', json: { addresses: [] } });
      await api(`${first.url}/api/v1/checkins/deleted`, { method: 'POST', json: { addresses: [] } });
      await api(`${first.url}/api/v1/checkins/deleted`, { method: 'DELETE' });
      expect(await first.stop()).toBe(0);

      second = await startChild({ dataDir: first.dataDir });
      const status = await api(`${second.url}/api/v1/builds/${res.body.id}`);
      expect(status.body).toMatchObject({ state: 'completed', createdAt: done.createdAt, completedAt: done.completedAt });
      const after = await api(`${second.url}/artifacts/${res.body.id}/boot.iso`, { method: 'HEAD' });
      expect(after.headers.etag).toBe(before.headers.etag);
      expect((await api(`${second.url}/api/v1/checkins/reported`)).body.addresses).toEqual(['192.0.2.44']);
      // a server still booting when the service restarted can report in
      expect((await api(`${second.url}/api/v1/checkins/registered-only`, { method: 'PUT', json: { addresses: ['192.0.2.45'] } })).status).toBe(204);
      expect((await api(`${second.url}/api/v1/checkins/deleted`)).status).toBe(404);
    } finally {
      await second?.stop();
      await first.kill().catch(() => {});
    }
  });

  test('after SIGKILL mid-build the build resumes, scratch space is cleaned and nothing half-written is served', async () => {
    const base = tempDir('base');
    fs.symlinkSync(path.join(BASE_ARTIFACTS, 'vmlinuz-amd64'), path.join(base, 'vmlinuz-amd64'));
    const big = Buffer.alloc(64 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    fs.writeFileSync(path.join(base, 'initramfs-big.img'), big);
    const args = ['--base-artifacts', base];

    const first = await startChild({ args });
    const res = await api(`${first.url}/api/v1/builds`, { method: 'POST', json: tinyRequest({ initramfs: 'initramfs-big.img' }) });
    for (let i = 0; i < 200 && (await api(`${first.url}/api/v1/builds/${res.body.id}`)).body.state !== 'running'; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 150));
    await first.kill();
    // killed with its work directory in tmp/ and nothing published yet
    const scratch = fs.readdirSync(path.join(first.dataDir, 'tmp'));
    expect(scratch).toHaveLength(1);
    expect(scratch[0]).toMatch(new RegExp(`^${res.body.id.slice(0, 16)}-`));
    const buildDir = path.join(first.dataDir, 'builds', res.body.id);
    expect(fs.readdirSync(buildDir)).toEqual(['build.json']);
    expect(JSON.parse(fs.readFileSync(path.join(buildDir, 'build.json'), 'utf8')).state).toBe('running');

    const second = await startChild({ dataDir: first.dataDir, args });
    try {
      // re-queued at start and running again before the listener opened
      expect((await api(`${second.url}/api/v1/builds/${res.body.id}`)).body.state).toBe('running');
      expect((await api(`${second.url}/artifacts/${res.body.id}/uki.efi`, { method: 'HEAD' })).status).toBe(404);
      const done = await waitForBuild(second.url, res.body.id);
      expect(done.state).toBe('completed');
      expect(fs.readdirSync(path.join(first.dataDir, 'tmp'))).toEqual([]);
      const head = await api(`${second.url}/artifacts/${res.body.id}/uki.efi`, { method: 'HEAD' });
      expect(Number(head.headers['content-length'])).toBe(fs.statSync(path.join(first.dataDir, 'builds', res.body.id, 'uki.efi')).size);
    } finally {
      await second.stop();
    }
  });
});
