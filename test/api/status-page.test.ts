// The status page's data as a client gets it: the page itself, a snapshot naming each build's server
// and checkin (from its NoCloud seed) with its delivery, and the event stream sending a new snapshot
// every second. Trusted clients only.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Agent, request } from 'undici';
import { assertMatchesSpec } from '../support/openapi.js';
import { api, seededTinyRequest, startInProcess, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { SHUTDOWN_DRAIN_MS } from '../../src/service.js';

requireBaseArtifacts();

describe('status page', () => {
  let svc: InProcessService;
  let id: string;
  const untrusted = new Agent({ localAddress: '127.0.0.2' });
  const CHECKIN = 'status-page-0001';

  beforeAll(async () => {
    svc = await startInProcess(['--trusted-cidrs', '127.0.0.1/32']);
    expect((await api(`${svc.url}/api/v1/checkins/${CHECKIN}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: seededTinyRequest('console=ttyS0 status-page', 'rack1-node07', CHECKIN) });
    id = res.body.id;
    await waitForBuild(svc.url, id);
  });
  afterAll(async () => {
    await untrusted.close();
    await svc?.close();
  });

  test('/ui is one HTML page that listens to /ui/events; untrusted clients get 403 on all three', async () => {
    const page = await api(`${svc.url}/ui`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.text).toContain('new EventSource("/ui/events")');
    expect(page.text).not.toMatch(/<(script|link)[^>]+(src|href)=/); // nothing fetched from elsewhere
    for (const p of ['/ui', '/ui/snapshot', '/ui/events']) {
      const res = await request(`${svc.url}${p}`, { dispatcher: untrusted });
      expect(res.statusCode, p).toBe(403);
      await res.body.text();
    }
  });

  test('the snapshot names the build\'s server and checkin, with its delivery and the checkin\'s addresses', async () => {
    const isoUrl = `${svc.url}/artifacts/${id}/boot.iso`;
    const read = await request(isoUrl, { headers: { range: 'bytes=0-65535' } });
    expect((await read.body.arrayBuffer()).byteLength).toBe(65536);
    expect((await api(`${svc.url}/api/v1/checkins/${CHECKIN}`, { method: 'PUT', json: { addresses: ['192.0.2.57'] } })).status).toBe(204);

    const snap = await api(`${svc.url}/ui/snapshot`);
    assertMatchesSpec('/ui/snapshot', 'get', 200, snap.body);
    const build = snap.body.builds.find((b: { id: string }) => b.id === id);
    expect(build).toMatchObject({ state: 'completed', hostname: 'rack1-node07', checkinId: CHECKIN });
    expect(build.delivery.iso).toMatchObject({ bytesServed: 65536, coveredBytes: 65536, readers: ['127.0.0.1'] });
    expect(snap.body.checkins).toEqual([expect.objectContaining({ id: CHECKIN, addresses: ['192.0.2.57'] })]);
  });

  test('/ui/events sends a snapshot at once and a newer one every second', async () => {
    const browser = new Agent();
    const res = await request(`${svc.url}/ui/events`, { dispatcher: browser });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    const events: Array<{ at: string }> = [];
    let text = '';
    const started = Date.now();
    for await (const chunk of res.body) {
      text += chunk.toString();
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        expect(block).toMatch(/^event: snapshot\ndata: /);
        const snap = JSON.parse(block.slice(block.indexOf('data: ') + 6));
        assertMatchesSpec('/ui/snapshot', 'get', 200, snap);
        events.push(snap);
      }
      if (events.length >= 3) break;
    }
    await browser.destroy(); // a browser that goes away: its stream stops with its socket
    expect(events).toHaveLength(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    expect(Date.parse(events[2]!.at)).toBeGreaterThan(Date.parse(events[1]!.at));
    expect(Date.parse(events[1]!.at)).toBeGreaterThan(Date.parse(events[0]!.at));
  });

  test('a stopping service ends the open event streams instead of waiting for the browsers', async () => {
    const res = await request(`${svc.url}/ui/events`);
    const ended = (async () => {
      let bytes = 0;
      for await (const chunk of res.body) bytes += chunk.length;
      return bytes;
    })();
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const closing = svc.close();
    expect(await ended).toBeGreaterThan(0); // the stream ended, after its first snapshot
    await closing;
    // Not cut at the drain deadline, which ends every connection still open.
    expect(Date.now() - t0).toBeLessThan(SHUTDOWN_DRAIN_MS);
    svc = undefined as unknown as InProcessService;
  });
});
