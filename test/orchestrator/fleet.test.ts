// A fleet in one run: five simulated servers (the ephemeral OS in containers, lab/README.md "Simulated
// servers") and one QEMU server inspected by one ansible-playbook run, watched the whole time by the
// service's status page open in headless Chromium inside the lab's namespace (never reloaded): each
// server's row must show its ISO being read and its checkin's address as they happen. What each
// simulated server reported is checked against what the lab gave it (its NIC, disks and identity, not
// the host's), and its BMC's reads against the service's delivery record.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { failures, requireAnsible, runPlaybook, serverResult, type PlaybookRun } from '../support/ansible.js';
import { LabService, startLab, type TestLab } from '../support/lab.js';
import { requireBaseArtifacts, requireFile, requireTool } from '../support/prerequisites.js';
import { REPO } from '../support/service.js';

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-amd64.img');
requireAnsible();
requireTool('systemd-nspawn', 'systemd-container');
const CHROMIUM = '/usr/bin/chromium';
requireFile(CHROMIUM, 'chromium');
const LOGS = path.join(REPO, 'test-results/fleet');

/** What the page showed for one server's row at any moment of the run (recorded in the page). */
interface Seen {
  build: string;
  isoPercentMax: number;
  checkinAddress: string | null;
  rateSeen: boolean;
}

describe('a fleet of five simulated servers and one QEMU server in one inspection run', { timeout: 1_200_000 }, () => {
  let lab: TestLab;
  let browser: Browser;
  let page: Page;
  let run: PlaybookRun;

  beforeAll(async () => {
    fs.mkdirSync(LOGS, { recursive: true });
    // Slow links (200 Mbit/s) so that a read lasts a few of the page's one-second updates.
    lab = await startLab({ servers: 6, simulated: 5, simulatedLinkMbps: 200 });
    // Chromium runs inside the namespace (the service trusts only the lab's own address) and is
    // driven over a pipe, which crosses namespaces where a DevTools port on loopback would not.
    const wrapper = path.join(lab.d.stateDir, 'chromium-in-lab.sh');
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
    browser = await puppeteer.launch({ executablePath: wrapper, pipe: true, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage();
    await page.setViewport({ width: 1500, height: 640 });
    await page.goto(`${lab.d.serviceUrl}/ui`);
    await page.waitForSelector('#live[data-at]', { timeout: 15_000 });
    // Every redraw of the builds table is recorded by row (server name in the first cell).
    await page.evaluate(() => {
      const seen: Record<string, { build: string; isoPercentMax: number; checkinAddress: string | null; rateSeen: boolean }> = {};
      (window as unknown as { seen: typeof seen }).seen = seen;
      const record = () => {
        for (const row of document.querySelectorAll('#builds tbody tr[data-build]')) {
          const name = row.querySelector('td')?.textContent ?? '';
          const s = (seen[name] ??= { build: (row as HTMLElement).dataset.build!, isoPercentMax: 0, checkinAddress: null, rateSeen: false });
          const iso = row.querySelector('.bar[data-file="iso"]') as HTMLElement | null;
          s.isoPercentMax = Math.max(s.isoPercentMax, Number(iso?.dataset.percent ?? 0));
          const checkin = row.querySelector('.checkin')?.textContent ?? '';
          if (/^\d+\.\d+\.\d+\.\d+/.test(checkin)) s.checkinAddress = checkin.split(/[ ,]/)[0]!;
          if (/MB\/s/.test(row.querySelectorAll('td')[5]?.textContent ?? '')) s.rateSeen = true;
        }
      };
      new MutationObserver(record).observe(document.querySelector('#builds tbody')!, { childList: true, subtree: true });
    });
    run = await runPlaybook(lab.ns, lab.d.inventory, 'inspect.yml', [], { timeoutMs: 1_000_000, log: path.join(LOGS, 'inspect.log') });
    await page.screenshot({ path: path.join(LOGS, 'status-page-after-run.png'), fullPage: true });
  }, 1_100_000);

  afterAll(async () => {
    await browser?.close();
    await lab?.down();
  });

  test('every server is inspected, each one in its own OS with only its own hardware, and the open page showed each one\'s delivery and checkin', async () => {
    expect(failures(run), run.output.slice(-3000)).toEqual({});
    expect(run.code).toBe(0);
    const seen = await page.evaluate(() => (window as unknown as { seen: Record<string, Seen> }).seen);
    const svc = new LabService(lab.ns, lab.d);
    for (const server of lab.d.servers) {
      const result = serverResult(run, server.name);
      expect(result.result, server.name).toBe('ok');
      const row = seen[`inspect-${result.run_id!.slice(0, 8)}`];
      expect(row, `${server.name}: no row on the page`).toBeDefined();
      const inventory = JSON.parse(fs.readFileSync(path.join(lab.d.stateDir, 'inspections', `${server.name}.json`), 'utf8'));
      const address = inventory.nics.find((n: { mac: string }) => n.mac === server.provisioningMac).addresses.find((a: string) => a.includes('.')).split('/')[0];
      // The page showed the address this server checked in with, the one its NIC has.
      expect(row!.checkinAddress, server.name).toBe(address);
      const { body: build } = await svc.call('GET', `/api/v1/builds/${row!.build}`);
      // The page's last figure is the service's own record of the share covered.
      expect(row!.isoPercentMax, server.name).toBe(build.delivery.iso.coveredPercent);
      if (server.kind === 'simulated') {
        // The service's record of its BMC's reads: every byte of the ISO exactly once (one Range read
        // per chunk, no overlap), from the lab's side of the network.
        const iso = build.delivery.iso;
        expect(iso.bytesServed, server.name).toBe(iso.size);
        expect(iso.coveredBytes, server.name).toBe(iso.size);
        // Its BMC read every byte of the ISO (Range reads at the link speed): 100 % on the page, live.
        expect(row!.isoPercentMax, server.name).toBe(100);
        expect(row!.rateSeen, server.name).toBe(true);
        // Only what is its own: its two NICs (veths, by their MACs), its two disks by serial, its identity.
        expect(inventory.nics.map((n: { mac: string }) => n.mac).sort(), server.name).toEqual([...server.macs].sort());
        expect(inventory.disks.map((d: { serial: string }) => d.serial).sort(), server.name).toEqual(server.disks.map((d) => d.serial).sort());
        expect(inventory.disks.find((d: { serial: string }) => d.serial === server.disks[0]!.serial).wwn).toBe(server.disks[0]!.wwn);
        expect(inventory.system).toMatchObject({ serial: server.serialNumber, uuid: server.uuid, product: 'Lab Server (simulated)' });
        expect(inventory.tpm.present).toBe(false);
      } else {
        // OVMF reads what it boots through QEMU's 1 MiB read-ahead: all but the ISO's tail padding.
        expect(row!.isoPercentMax, server.name).toBeGreaterThanOrEqual(99);
        expect(inventory.system).toMatchObject({ serial: server.serialNumber, product: 'Lab Server' });
      }
    }
  });
});
