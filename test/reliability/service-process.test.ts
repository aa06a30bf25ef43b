// The child-process runner every process-level test and the benchmarks stand on
// (test/support/service-process.mjs): readiness, exit codes, signals, logs, environment, clean-up; and
// which client errors count as caused by a SIGKILL (fixtures.ts isConnectionError).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { freePort, serviceTempDir, spawnService, startService, stopAllServices } from '../support/service-process.mjs';
import { api } from '../support/service.js';
import { isConnectionError } from './fixtures.js';
import { until } from '../support/until.js';

/** An empty base-artifacts directory: the service starts without any image. */
const base = serviceTempDir('base');

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('service-process runner', () => {
  afterAll(() => stopAllServices());

  test('ready at the address of its "listening" line; SIGTERM ends it with exit code 0', async () => {
    const svc = await startService({ baseArtifacts: base });
    expect(svc.url).toBe(`http://127.0.0.1:${svc.port}`);
    expect(svc.tlsUrl).toBe(null);
    const health = await api(`${svc.url}/healthz`);
    expect([health.status, health.text]).toEqual([200, 'ok']);
    expect(await svc.stop()).toBe(0);
    expect(await svc.exited).toEqual({ code: 0, signal: null });
    const messages = svc.logs().trim().split('\n').map((line) => JSON.parse(line).msg);
    expect(messages[messages.length - 1]).toBe('stopped');
    expect(messages).toContain('listening');
  });

  test('stop with SIGINT: exit code 0', async () => {
    const svc = await startService({ baseArtifacts: base });
    expect(await svc.stop('SIGINT')).toBe(0);
  });

  test('kill() is a SIGKILL: no exit code, and a client then sees a connection error', async () => {
    const svc = await startService({ baseArtifacts: base });
    await svc.kill();
    expect(await svc.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const err = await errorOf(api(`${svc.url}/healthz`));
    expect((err as { code?: string }).code).toBe('ECONNREFUSED');
    expect(isConnectionError(err)).toBe(true);
  });

  test('a service that exits before listening rejects with its exit code and output', async () => {
    const spawned = spawnService({ baseArtifacts: base, args: ['--no-such-flag'] });
    const err = (await errorOf(spawned.listening)) as Error;
    expect(err.message).toMatch(/^service exited \(code 2\) before listening:\nuki-on-demand: .*--no-such-flag/);
    expect(await spawned.exited).toEqual({ code: 2, signal: null });
  });

  test('one that does not get ready in time rejects and can be killed', async () => {
    const spawned = spawnService({ baseArtifacts: base, startTimeoutMs: 1 });
    expect(((await errorOf(spawned.listening)) as Error).message).toMatch(/^service did not get ready within 1 ms:/);
    await spawned.kill();
    expect(await spawned.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  test('environment: the listen address from UOD_LISTEN when no flag is given; /healthz readiness with info logs off', async () => {
    const port = await freePort();
    const svc = await startService({
      baseArtifacts: base,
      listen: null,
      env: { UOD_LISTEN: `127.0.0.1:${port}` },
    });
    expect(svc.port).toBe(port);
    expect(await svc.stop()).toBe(0);

    const quietPort = await freePort();
    const quiet = await startService({ baseArtifacts: base, listen: `127.0.0.1:${quietPort}`, readiness: 'healthz', env: { UOD_LOG_LEVEL: 'warn' } });
    expect(quiet.url).toBe(`http://127.0.0.1:${quietPort}`);
    // warnings only: ready without any "listening" line
    const levels = quiet.logs().trim().split('\n').filter(Boolean).map((line) => JSON.parse(line).level as number);
    expect(levels.filter((level) => level < 40)).toEqual([]);
    expect(await quiet.stop()).toBe(0);
  });

  test('a data directory it made and a service still running are gone after stopAllServices()', async () => {
    const svc = await startService({ baseArtifacts: base });
    const dataDir = svc.dataDir as string;
    expect(fs.existsSync(path.join(dataDir, 'builds'))).toBe(true);
    await stopAllServices();
    expect(await svc.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  test('logs go to logFile as well', async () => {
    const logFile = path.join(serviceTempDir('logs'), 'service.log');
    const svc = await startService({ baseArtifacts: base, logFile });
    expect(await svc.stop()).toBe(0);
    // the file is closed when the pipes are, shortly after the exit
    await until('the log file to be complete', 5_000, async () => (fs.readFileSync(logFile, 'utf8') === svc.logs() ? true : undefined), 50);
    expect(svc.logs()).toContain('"msg":"stopped"');
  });
});

describe('isConnectionError: what a SIGKILL may cost a client, and nothing else', () => {
  test.each([
    ['ECONNRESET', { code: 'ECONNRESET' }, true],
    ['ECONNREFUSED', { code: 'ECONNREFUSED' }, true],
    ['undici: other side closed', { code: 'UND_ERR_SOCKET', message: 'other side closed' }, true],
    ['node:http: socket hang up', new Error('socket hang up'), true],
    ['fetch failed, caused by ECONNRESET', new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } }), true],
    ['a headers timeout', { code: 'UND_ERR_HEADERS_TIMEOUT' }, false],
    ['a failed assertion', new Error('expected 500 to be 202'), false],
    ['undefined', undefined, false],
  ])('%s → %s', (_name, err, expected) => {
    expect(isConnectionError(err)).toBe(expected);
  });
});
