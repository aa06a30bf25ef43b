// SIGKILL at random moments (start-up, submission, mid-build, publishing) across ten restarts of the
// service process, with builds and checkin writes in flight. After every crash and every restart the
// data directory and the API must agree with everything that was acknowledged before the crash.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { computeBuildId } from '../../src/builds/build-id.js';
import { ImagePipeline } from '../../src/builds/pipeline.js';
import { normalizeBuildRequest } from '../../src/builds/request.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { api, b64, tinyRequest } from '../support/service.js';
import { takeTurn } from './exclusive.js';
import { isConnectionError, makeBaseDir, removeTempRoots, seededRandom, sha256, sha256File, sleep, tempRoot } from './fixtures.js';
import { until } from '../support/until.js';
import { stopAllServices, spawnService, startService, type ServiceProcess } from '../support/service-process.mjs';

requireBaseArtifacts();

const BUILDS = 20;
const ROUNDS = 10;
const CONCURRENCY = 2;
const SEED = Number(process.env.UOD_CRASH_SEED ?? Date.now() % 100_000);
const FILLERS = { 'initramfs-20m.img': 20, 'initramfs-35m.img': 35, 'initramfs-50m.img': 50 };
const KINDS = ['uki', 'iso'] as const;
type Kind = (typeof KINDS)[number];
const FILE: Record<Kind, string> = { uki: 'uki.efi', iso: 'boot.iso' };

interface Published {
  completedAt: string;
  artifacts: Record<Kind, { sha256: string; size: number }>;
}

/** What the client side knows was acknowledged, and therefore what every restart must still show. */
interface Model {
  /** The id of each request, computed here independently of the service. */
  ids: string[];
  /** Ids whose POST was answered 202 and which were not deleted since. */
  accepted: Set<string>;
  /** Builds seen completed (through the API or on disk); they must stay exactly so. */
  completed: Map<string, Published>;
  /** Checkin id → the values a restart may show (the last acknowledged one and any still in flight). */
  checkins: Map<string, { registered: 'yes' | 'maybe'; values: Set<string> }>;
}

function requestFor(i: number): Record<string, unknown> {
  const names = Object.keys(FILLERS);
  return tinyRequest({
    initramfs: names[i % names.length],
    cmdline: `console=ttyS0 crash-safety n=${i}`,
    ...(i % 2 ? { files: [{ path: '/etc/uod/n', contentBase64: b64(`${i}\n`) }], dirOverrides: [{ path: '/etc/uod', mode: '0700' }] } : {}),
  });
}

describe(`crash safety: ${BUILDS} builds, SIGKILL at random moments, ${ROUNDS} restarts (seed ${SEED})`, () => {
  let release: () => void = () => {};
  let root: string;
  let base: string;
  let dataDir: string;
  const random = seededRandom(SEED);
  const model: Model = { ids: [], accepted: new Set(), completed: new Map(), checkins: new Map() };
  /** `${id}/${kind}` → "ino:size:mtime" of a file already hashed, so unchanged artifacts are hashed once. */
  const hashed = new Map<string, string>();
  const log: string[] = [];
  const args = ['--build-concurrency', String(CONCURRENCY)];

  beforeAll(async () => {
    release = await takeTurn(900_000);
    root = tempRoot('crash');
    base = makeBaseDir(path.join(root, 'base'), { fillers: FILLERS });
    dataDir = path.join(root, 'data');
    const digest = (name: string) => sha256File(fs.realpathSync(path.join(base, name)));
    const bases = { kernelSha256: await digest('vmlinuz-amd64') };
    for (let i = 0; i < BUILDS; i++) {
      const request = normalizeBuildRequest(requestFor(i), { maxFiles: 1024 });
      // The service runs the default pipeline: its variant (the UKI writer) is part of the id.
      model.ids.push(computeBuildId(request, { ...bases, initramfsSha256: await digest(request.initramfs) }, new ImagePipeline().variant));
    }
    expect(new Set(model.ids).size).toBe(BUILDS);
  }, 900_000);

  afterAll(async () => {
    await stopAllServices();
    removeTempRoots();
    release();
  });

  const readRecord = (id: string) => JSON.parse(fs.readFileSync(path.join(dataDir, 'builds', id, 'build.json'), 'utf8'));

  /** With the service dead: every record parses, and every completed record's artifacts hash to what it says. */
  async function checkDisk(when: string): Promise<void> {
    const dirs = fs.readdirSync(path.join(dataDir, 'builds'));
    for (const id of dirs) {
      expect(model.ids, `${when}: unexpected build directory ${id}`).toContain(id);
      const files = fs.readdirSync(path.join(dataDir, 'builds', id));
      // a directory created for a submission that never got its record written is cleaned at start
      if (!files.includes('build.json')) continue;
      const record = readRecord(id);
      expect(record.id).toBe(id);
      expect(['pending', 'running', 'completed'], `${when}: ${id} is ${record.state}: ${record.error}`).toContain(record.state);
      const known = model.completed.get(id);
      if (known) {
        expect(record.state, `${when}: completed build ${id} regressed`).toBe('completed');
        expect(record.completedAt).toBe(known.completedAt);
      }
      if (record.state !== 'completed') continue;
      for (const kind of KINDS) {
        const file = path.join(dataDir, 'builds', id, FILE[kind]);
        const st = fs.statSync(file);
        expect(st.size, `${when}: ${id}/${FILE[kind]} size`).toBe(record.artifacts[kind].size);
        const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
        if (hashed.get(`${id}/${kind}`) !== stamp) {
          expect(await sha256File(file), `${when}: ${id}/${FILE[kind]} does not match the sha256 recorded at publish`).toBe(record.artifacts[kind].sha256);
          hashed.set(`${id}/${kind}`, stamp);
        }
        if (known) expect(record.artifacts[kind].sha256).toBe(known.artifacts[kind].sha256);
      }
      model.completed.set(id, { completedAt: record.completedAt, artifacts: record.artifacts });
    }
  }

  /** With the service up again: nothing acknowledged is lost, nothing half-done is reachable. */
  async function checkRestart(svc: ServiceProcess, when: string): Promise<void> {
    const list = await api(`${svc.url}/api/v1/builds`);
    expect(list.status).toBe(200);
    const states = new Map<string, { state: string; error?: string; completedAt?: string }>(list.body.map((b: { id: string }) => [b.id, b]));
    for (const id of states.keys()) expect(model.ids, `${when}: unknown build ${id}`).toContain(id);
    for (const id of model.accepted) expect(states.has(id), `${when}: accepted build ${id} is gone`).toBe(true);
    const running = [...states.values()].filter((s) => s.state === 'running').length;
    expect(running, `${when}: more builds running than --build-concurrency`).toBeLessThanOrEqual(CONCURRENCY);
    for (const [id, s] of states) {
      expect(s.state, `${when}: ${id} failed: ${s.error}`).not.toBe('failed');
      const known = model.completed.get(id);
      if (known) {
        expect(s.state, `${when}: completed build ${id} is ${s.state} after restart`).toBe('completed');
        expect(s.completedAt).toBe(known.completedAt);
      }
      for (const kind of KINDS) {
        const head = await api(`${svc.url}/artifacts/${id}/${FILE[kind]}`, { method: 'HEAD' });
        if (s.state === 'completed') {
          const published = (known ?? model.completed.get(id))?.artifacts[kind] ?? readRecord(id).artifacts[kind];
          expect(head.status, `${when}: HEAD ${id}/${FILE[kind]}`).toBe(200);
          expect(head.headers.etag).toBe(`"${published.sha256}"`);
          expect(Number(head.headers['content-length'])).toBe(published.size);
        } else if (head.status !== 404) {
          // it may have completed since the list was taken; otherwise a half-done build is being served
          const now = (await api(`${svc.url}/api/v1/builds/${id}`)).body.state;
          expect([head.status, now], `${when}: ${id} was ${s.state} and its ${FILE[kind]} answered ${head.status}`).toEqual([200, 'completed']);
        }
      }
    }
    for (const [id, c] of model.checkins) {
      const res = await api(`${svc.url}/api/v1/checkins/${id}`);
      if (c.registered === 'maybe' && res.status === 404) continue;
      expect(res.status, `${when}: checkin ${id} (acknowledged) is gone`).toBe(200);
      const got = JSON.stringify(res.body.addresses);
      expect([...c.values], `${when}: checkin ${id} shows ${got}`).toContain(got);
    }
  }

  /** Submits every request; a 202 must carry the id this request always had. Only errors `lost` accepts are let go. */
  async function submitAll(svc: ServiceProcess, lost: (err: unknown) => boolean): Promise<void> {
    await Promise.all(
      Array.from({ length: BUILDS }, async (_, i) => {
        try {
          const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: requestFor(i) });
          expect(res.status, res.text).toBe(202);
          expect(res.body.id, `request ${i} got an id other than the sha256 of its normalized form`).toBe(model.ids[i]);
          model.accepted.add(res.body.id);
        } catch (err) {
          if (!lost(err)) throw err;
        }
      }),
    );
  }

  /** Registers and updates checkins in a loop until the service is killed or 40 updates are done. Only errors `lost` accepts are let go. */
  async function writeCheckins(svc: ServiceProcess, round: number, killed: () => boolean, lost: (err: unknown) => boolean): Promise<void> {
    await Promise.all(
      Array.from({ length: 6 }, async (_, k) => {
        const id = `crash-r${round}-k${k}`;
        try {
          for (let step = 0; step < 40 && !killed(); step++) {
            const addresses = step === 0 ? [] : [`10.${round}.${k}.${step}`];
            const entry = model.checkins.get(id) ?? { registered: 'maybe' as const, values: new Set<string>() };
            model.checkins.set(id, entry);
            entry.values.add(JSON.stringify(addresses));
            const res = await api(`${svc.url}/api/v1/checkins/${id}`, { method: step === 0 ? 'POST' : 'PUT', json: { addresses } });
            expect(res.status, res.text).toBe(204);
            model.checkins.set(id, { registered: 'yes', values: new Set([JSON.stringify(addresses)]) });
            await sleep(20);
          }
        } catch (err) {
          if (!lost(err)) throw err;
        }
      }),
    );
  }

  async function waitUntilIdle(svc: ServiceProcess, timeoutMs: number): Promise<void> {
    await until('every build to finish', timeoutMs, async () => {
      const list = (await api(`${svc.url}/api/v1/builds`)).body as Array<{ state: string }>;
      return list.length === BUILDS && list.every((b) => b.state === 'completed' || b.state === 'failed') ? true : undefined;
    }, 200);
    const list = (await api(`${svc.url}/api/v1/builds`)).body as Array<{ id: string; state: string; error?: string; completedAt: string }>;
    for (const b of list) expect(b.state, `${b.id} failed: ${b.error}`).toBe('completed');
    await until('data/tmp to be empty', 10_000, async () => (fs.readdirSync(path.join(dataDir, 'tmp')).length === 0 ? true : undefined), 50);
  }

  async function deleteSome(svc: ServiceProcess, count: number): Promise<void> {
    const victims = [...model.completed.keys()].sort(() => random() - 0.5).slice(0, count);
    for (const id of victims) {
      expect((await api(`${svc.url}/api/v1/builds/${id}`, { method: 'DELETE' })).status).toBe(204);
      model.completed.delete(id);
      model.accepted.delete(id);
      for (const kind of KINDS) hashed.delete(`${id}/${kind}`);
    }
    log.push(`deleted ${victims.length}`);
  }

  test('every crash keeps what was acknowledged; unfinished builds resume and complete', async () => {
    let midBuild = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const when = `round ${round}`;
      // Some rounds first crash the service during start-up: while it reloads and re-queues.
      if (round % 3 === 2) {
        const early = spawnService({ dataDir, baseArtifacts: base, args });
        await sleep(20 + random() * 400);
        await early.kill();
        log.push(`${when}: killed during start-up`);
        await checkDisk(`${when} after a start-up crash`);
      }

      const svc = await startService({ dataDir, baseArtifacts: base, args });
      await checkRestart(svc, `${when} after restart`);
      if (round === 4) {
        // Half-way: let everything re-queued finish, check, then make new work for later rounds.
        await submitAll(svc, () => false);
        await waitUntilIdle(svc, 240_000);
        await checkRestart(svc, `${when} once idle`);
        await deleteSome(svc, 6);
      }
      // Fresh work every round, so that later crashes hit builds in progress too.
      else if (round > 0) await deleteSome(svc, 4);

      // Set once kill(2) has delivered the SIGKILL, not when the kill is decided: until then every
      // request must succeed.
      let killed = false;
      let lostRequests = 0;
      /** What the crash may cost: a request whose connection failed after the SIGKILL was delivered. */
      const lostToKill = (err: unknown) => {
        if (!killed || !isConnectionError(err)) return false;
        lostRequests++;
        return true;
      };
      const strategy = (['during-submit', 'mid-build', 'random'] as const)[round % 3] as 'during-submit' | 'mid-build' | 'random';
      let delay = 0;
      const killAt = (ms: number) => sleep(ms).then(async () => {
        killed = svc.proc.kill('SIGKILL');
        expect(killed, `${when}: SIGKILL not delivered (the service had exited: ${svc.logs().slice(-2000)})`).toBe(true);
        await svc.exited;
      });
      let killing: Promise<void>;
      const checkins = writeCheckins(svc, round, () => killed, lostToKill);
      if (strategy === 'during-submit') {
        delay = Math.floor(random() * 400);
        killing = killAt(delay);
        await submitAll(svc, lostToKill);
      } else {
        await submitAll(svc, () => false);
        if (strategy === 'mid-build') {
          await until('a build to be running', 30_000, async () => {
            const list = (await api(`${svc.url}/api/v1/builds`)).body as Array<{ state: string }>;
            return list.some((b) => b.state === 'running') || list.every((b) => b.state === 'completed') ? true : undefined;
          }, 10);
          delay = Math.floor(random() * 1500);
        } else {
          delay = Math.floor(random() * 2000);
        }
        killing = killAt(delay);
      }
      await killing;
      await checkins;
      const running = fs.readdirSync(path.join(dataDir, 'builds')).filter((id) => {
        const file = path.join(dataDir, 'builds', id, 'build.json');
        return fs.existsSync(file) && readRecord(id).state === 'running';
      }).length;
      if (running > 0) midBuild++;
      log.push(`${when}: SIGKILL ${strategy} +${delay} ms with ${running} running, ${lostRequests} requests cut off`);
      await checkDisk(`${when} after SIGKILL`);
    }
    // The point of the exercise: most crashes must have hit builds in progress.
    expect(midBuild, log.join('\n')).toBeGreaterThanOrEqual(5);

    // The last restart: everything accepted finishes, everything is intact, nothing is left in tmp.
    const svc = await startService({ dataDir, baseArtifacts: base, args });
    await checkRestart(svc, 'final restart');
    await submitAll(svc, () => false);
    await waitUntilIdle(svc, 300_000);
    await svc.stop();
    await checkDisk('final');
    expect(model.completed.size).toBe(BUILDS);
    console.log(`seed ${SEED}: ${log.join('; ')}`);
  }, 900_000);

  test('after the crashes the service serves correct bytes, resubmission is a no-op, and a rebuild is identical', async () => {
    expect(model.completed.size, 'the crash test ran').toBe(BUILDS);
    const svc = await startService({ dataDir, baseArtifacts: base, args });
    await checkRestart(svc, 'resubmission');
    // The same requests again: same ids, still completed, nothing rebuilt.
    for (let i = 0; i < BUILDS; i++) {
      const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: requestFor(i) });
      expect([res.status, res.body.id]).toEqual([202, model.ids[i]]);
      const status = (await api(`${svc.url}/api/v1/builds/${res.body.id}`)).body;
      expect(status.state).toBe('completed');
      expect(status.completedAt).toBe(model.completed.get(res.body.id)?.completedAt);
    }
    // One artifact through the network, whole, against the digest recorded at publish.
    const id = model.ids[BUILDS - 1] as string;
    const res = await fetch(`${svc.url}/artifacts/${id}/boot.iso`);
    expect(sha256(Buffer.from(await res.arrayBuffer()))).toBe(model.completed.get(id)?.artifacts.iso.sha256);
    // Deleted and submitted again, a build comes out byte-identical: content addressing holds.
    const before = model.completed.get(id)!;
    expect((await api(`${svc.url}/api/v1/builds/${id}`, { method: 'DELETE' })).status).toBe(204);
    const again = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: requestFor(BUILDS - 1) });
    expect(again.body.id).toBe(id);
    await until('the rebuild', 120_000, async () => {
      const s = (await api(`${svc.url}/api/v1/builds/${id}`)).body;
      return s.state === 'completed' || s.state === 'failed' ? s : undefined;
    }, 100);
    const record = readRecord(id);
    expect(record.state).toBe('completed');
    expect(record.artifacts.uki.sha256).toBe(before.artifacts.uki.sha256);
    expect(record.artifacts.iso.sha256).toBe(before.artifacts.iso.sha256);
    expect(await svc.stop()).toBe(0);
  }, 300_000);
});
