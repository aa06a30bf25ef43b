// The status page in a real browser (Debian's chromium, headless): it draws the build's row, and as a
// client reads the ISO and the server checks in, the same page, never reloaded, shows the new
// percentage and the checkin's address: the live update as an operator sees it.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import puppeteer, { type Browser } from 'puppeteer-core';
import { request } from 'undici';
import { api, REPO, seededTinyRequest, startInProcess, waitForBuild, type InProcessService } from '../support/service.js';
import { requireBaseArtifacts, requireFile } from '../support/prerequisites.js';

requireBaseArtifacts();
const CHROMIUM = '/usr/bin/chromium';
requireFile(CHROMIUM, 'chromium');
const SHOTS = path.join(REPO, 'test-results/ui');

describe('status page in Chromium', () => {
  let svc: InProcessService;
  let browser: Browser;
  let id: string;
  const CHECKIN = 'browser-check-01';

  beforeAll(async () => {
    svc = await startInProcess();
    expect((await api(`${svc.url}/api/v1/checkins/${CHECKIN}`, { method: 'POST', json: { addresses: [] } })).status).toBe(204);
    const res = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: seededTinyRequest('console=ttyS0 browser', 'rack2-node03', CHECKIN) });
    id = res.body.id;
    await waitForBuild(svc.url, id);
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await svc?.close();
  });

  test('the open page follows the ISO being read and the checkin arriving', async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1300, height: 420 });
    await page.goto(`${svc.url}/ui`);
    const row = `tr[data-build="${id}"]`;
    await page.waitForSelector(`${row} .bar[data-file="iso"]`, { timeout: 10_000 });
    const cell = (selector: string) => page.$eval(`${row} ${selector}`, (e) => e.textContent ?? '');
    const isoPercent = () => page.$eval(`${row} .bar[data-file="iso"]`, (e) => Number((e as HTMLElement).dataset.percent));
    expect(await cell('td:first-child')).toBe('rack2-node03');
    expect(await isoPercent()).toBe(0);
    expect(await cell('.checkin')).toBe('waiting');

    // A reader takes the first half of the ISO: the page, as it is, shows the share.
    const size = Number((await request(`${svc.url}/artifacts/${id}/boot.iso`, { method: 'HEAD' })).headers['content-length']);
    const half = Math.floor(size / 2);
    const first = await request(`${svc.url}/artifacts/${id}/boot.iso`, { headers: { range: `bytes=0-${half - 1}` } });
    expect((await first.body.arrayBuffer()).byteLength).toBe(half);
    const expected = Math.floor((half / size) * 10_000) / 100;
    await page.waitForFunction((sel: string, want: number) => Number((document.querySelector(sel) as HTMLElement | null)?.dataset.percent) === want,
      { timeout: 10_000 }, `${row} .bar[data-file="iso"]`, expected);
    expect(await cell('.bar[data-file="iso"] em')).toBe(`${(Math.floor(expected * 10) / 10).toFixed(1)} %`);
    await page.screenshot({ path: (fs.mkdirSync(SHOTS, { recursive: true }), path.join(SHOTS, 'status-page-half.png')) });

    // The server checks in, the rest is read: the checkin's address and a full bar appear.
    expect((await api(`${svc.url}/api/v1/checkins/${CHECKIN}`, { method: 'PUT', json: { addresses: ['192.0.2.77'] } })).status).toBe(204);
    const rest = await request(`${svc.url}/artifacts/${id}/boot.iso`, { headers: { range: `bytes=${half}-` } });
    expect((await rest.body.arrayBuffer()).byteLength).toBe(size - half);
    await page.waitForFunction((sel: string) => document.querySelector(sel)?.textContent?.startsWith('192.0.2.77'), { timeout: 10_000 }, `${row} .checkin`);
    await page.waitForFunction((sel: string) => (document.querySelector(sel) as HTMLElement | null)?.dataset.percent === '100', { timeout: 10_000 }, `${row} .bar[data-file="iso"]`);
    expect(await page.$eval(`${row} .bar[data-file="iso"]`, (e) => e.classList.contains('done'))).toBe(true);
    expect(await page.$eval(`tr[data-checkin="${CHECKIN}"] td:nth-child(2)`, (e) => e.textContent)).toBe('192.0.2.77');
    await page.screenshot({ path: path.join(SHOTS, 'status-page-done.png') });
  }, 60_000);
});
