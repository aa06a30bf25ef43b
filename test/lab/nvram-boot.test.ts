// Proof that the store written by lab/bmc/qemu/nvram.ts makes OVMF itself HTTP-boot the stored URI:
// QEMU with plain user-mode DHCP (no boot file), OVMF's own network stack (no iPXE), and a host
// HTTP server that records what the firmware asks for.
//
// The second describe asks whether OVMF honours a *static* IPv4 node (StaticIpAddress TRUE) in that
// load option, on a private bridge in a network namespace where nothing answers DHCP. It does not:
// edk2's HttpBootDxe takes only the Uri() node from the path (HttpBootParseFilePath) and always runs
// DHCP (HttpBootLoadFile → HttpBootDiscoverBootInfo → HttpBootDhcp4Dora). See lab/README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { readVariables, setHttpBootNext, type EfiVariable, type HttpBootOptions } from '../../lab/bmc/qemu/nvram.js';
import { destroyNamespace, ip, spawnInNamespace } from '../../lab/netns.js';
import { requireRoot, requireTool } from '../support/prerequisites.js';
import { until } from '../support/until.js';

const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const EFI_APP = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
const QEMU = 'qemu-system-x86_64';
const MAC = '52:54:00:12:34:56';
const NIC_SLOT = 3;
/** The firmware's GET arrives ≈ 9 s after QEMU starts under TCG; leave room for a loaded machine. */
const FETCH_DEADLINE_MS = 90_000;

interface Hit {
  method: string;
  url: string;
  atMs: number;
}

let dir: string;
let server: Server;
let port: number;
let hits: Hit[] = [];
let qemu: ChildProcess | undefined;
let qemuExited: Promise<void> = Promise.resolve();

beforeAll(async () => {
  for (const [file, pkg] of [
    [OVMF_CODE, 'ovmf'],
    [OVMF_VARS, 'ovmf'],
    [EFI_APP, 'systemd-boot-efi'],
    [`/usr/bin/${QEMU}`, 'qemu-system-x86'],
  ] as const) {
    if (!existsSync(file)) throw new Error(`${file} is missing: install the Debian package \`${pkg}\` (scripts/install-deps.sh)`);
  }
  dir = await mkdtemp(join(tmpdir(), 'uod-nvram-boot-'));
  const size = statSync(EFI_APP).size;
  server = createServer((req, res) => {
    hits.push({ method: req.method ?? '', url: req.url ?? '', atMs: performance.now() });
    if (!/^\/[a-z0-9-]+\.efi$/.test(req.url ?? '') || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Length': '0' }).end();
      return;
    }
    // OVMF stalls unless HEAD answers 200 with a Content-Length.
    res.writeHead(200, { 'Content-Type': 'application/efi', 'Content-Length': String(size) });
    if (req.method === 'HEAD') res.end();
    else createReadStream(EFI_APP).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterEach(async () => {
  await killQemu();
});

afterAll(async () => {
  await killQemu();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function killQemu(): Promise<void> {
  const p = qemu;
  qemu = undefined;
  if (!p?.pid) return;
  try {
    process.kill(-p.pid, 'SIGKILL'); // its own process group: `timeout` and QEMU
  } catch {
    // already gone
  }
  await qemuExited;
}

/** QEMU in its own process group under `timeout`, so a crashed test run cannot leave it behind. */
function startQemu(vars: string, serialLog: string): void {
  const accel = process.env.UOD_QEMU_ACCEL ?? 'tcg';
  const args = [
    '-s', 'KILL', '200', QEMU,
    '-machine', `q35,accel=${accel}`, '-m', '512', '-display', 'none', '-serial', `file:${serialLog}`,
    '-drive', `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`,
    '-drive', `if=pflash,format=raw,file=${vars}`,
    // Plain user-mode DHCP: an address and nothing else, no boot file.
    '-netdev', 'user,id=n0',
    // Empty romfile: OVMF's own HTTP boot, not the NIC's iPXE ROM.
    '-device', `virtio-net-pci,netdev=n0,mac=${MAC},addr=0x${NIC_SLOT.toString(16)},romfile=`,
  ];
  const p = spawn('timeout', args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  qemuExited = new Promise((resolve) => p.on('exit', () => resolve()));
  p.on('exit', (code) => {
    if (qemu === p) qemu = undefined;
    if (code !== null && code !== 0) hits.push({ method: 'QEMU-EXIT', url: `${code} ${stderr.trim()}`, atMs: performance.now() });
  });
  qemu = p;
}

async function waitFor<T>(what: () => T | undefined, timeoutMs: number, describeFailure: () => Promise<string>): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = what();
    if (v !== undefined) return v;
    if (performance.now() > deadline || !qemu) throw new Error(await describeFailure());
    await new Promise((r) => setTimeout(r, 250));
  }
}

function bootOrderOf(vars: EfiVariable[]): string[] {
  const order = vars.find((v) => v.name === 'BootOrder')?.data;
  if (!order) return [];
  return Array.from({ length: order.length / 2 }, (_, i) => order.readUInt16LE(i * 2).toString(16).toUpperCase().padStart(4, '0'));
}

/**
 * Stores http://10.0.2.2:<port>/<file> in `vars` (a fresh copy of OVMF_VARS unless it exists), boots,
 * and checks the firmware fetched exactly that file and consumed BootNext.
 */
async function bootAndExpectFetch(label: string, vars: string, file: string, opts: { mac?: string; pciDevice?: number }): Promise<void> {
  hits = [];
  const path = `/${file}`;
  const serialLog = join(dir, `${label}.serial.log`);
  if (!existsSync(vars)) await copyFile(OVMF_VARS, vars);
  await setHttpBootNext(vars, { uri: `http://10.0.2.2:${port}${path}`, ...opts });

  const t0 = performance.now();
  startQemu(vars, serialLog);
  const failure = async () =>
    `no GET ${path} from the firmware within ${FETCH_DEADLINE_MS / 1000} s (${label}). ` +
    `Requests: ${JSON.stringify(hits)}. Serial:\n${(await readFile(serialLog, 'utf8').catch(() => '')).slice(-3000)}`;
  const get = await waitFor(() => hits.find((h) => h.method === 'GET' && h.url === path), FETCH_DEADLINE_MS, failure);
  const head = hits.find((h) => h.method === 'HEAD' && h.url === path);
  expect(head, 'the firmware sends HEAD before GET').toBeDefined();
  expect(head!.atMs).toBeLessThanOrEqual(get.atMs);
  expect(hits.filter((h) => h.url !== path)).toEqual([]);

  // The store is written through by QEMU's pflash; read it once QEMU is gone.
  await killQemu();
  const after = await readVariables(vars);
  expect(after.filter((v) => v.name === 'BootNext'), 'OVMF consumes BootNext').toEqual([]);
  if (process.env.UOD_KEEP_VARS) await copyFile(vars, join(process.env.UOD_KEEP_VARS, `${label}.fd`));
  console.log(
    `${label}: HEAD at ${((head!.atMs - t0) / 1000).toFixed(1)} s, GET at ${((get.atMs - t0) / 1000).toFixed(1)} s; ` +
      `after the boot: BootOrder ${bootOrderOf(after).join(',') || '(none)'}, ` +
      `Boot0100 ${after.some((v) => v.name === 'Boot0100') ? 'kept' : 'gone'}, ` +
      `${after.length} live variables: ${after.map((v) => v.name).join(' ')}`,
  );
}

describe('OVMF boots the HttpBootUri stored by setHttpBootNext', () => {
  test('PciRoot/Pci/MAC/IPv4/Uri path: the firmware sends HEAD then GET and consumes BootNext', { timeout: 240_000 }, async () => {
    await bootAndExpectFetch('full-path', join(dir, 'full-path.fd'), 'boot.efi', { mac: MAC, pciDevice: NIC_SLOT });
  });

  test('Uri()-only path boots the same way', { timeout: 240_000 }, async () => {
    await bootAndExpectFetch('uri-only', join(dir, 'uri-only.fd'), 'boot.efi', {});
  });

  // What a BMC meets in practice: a store the firmware has already filled with its own variables.
  test('a second HttpBootUri written into the store the firmware used is fetched too', { timeout: 240_000 }, async () => {
    const vars = join(dir, 'reused.fd');
    await bootAndExpectFetch('reused-1', vars, 'boot.efi', { mac: MAC, pciDevice: NIC_SLOT });
    await bootAndExpectFetch('reused-2', vars, 'second.efi', { mac: MAC, pciDevice: NIC_SLOT });
  });
});

// --- A static IPv4 node and no DHCP server ---------------------------------------------------------

/** What the firmware sends, seen from inside the namespace: one tcpdump line per frame (`-e -n`). */
const PROBE_FILTER = 'port 67 or port 68 or arp or tcp port 8080';
const BRIDGE_ADDRESS = '192.0.2.1';
const STATIC_ADDRESS = '192.0.2.50';
const PROBE_URI = `http://${BRIDGE_ADDRESS}:8080/boot.efi`;
/** How long the static-address boot gets to fetch; OVMF's DHCP for the option gives up after ≈ 60 s. */
const STATIC_DEADLINE_MS = 120_000;
const GAVE_UP = /failed to load Boot0100 "UEFI HTTP Boot" from .*: Not Found/;

/** Records every request as a JSON line on stdout; serves the EFI app with Content-Length on HEAD and GET. */
const PROBE_SERVER = `
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
const size = statSync(${JSON.stringify(EFI_APP)}).size;
createServer((req, res) => {
  console.log(JSON.stringify({ method: req.method, url: req.url, from: req.socket.remoteAddress, atMs: Date.now() }));
  if (req.url !== '/boot.efi' || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'Content-Length': '0' }).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/efi', 'Content-Length': String(size) });
  if (req.method === 'HEAD') res.end();
  else createReadStream(${JSON.stringify(EFI_APP)}).pipe(res);
}).listen(8080, ${JSON.stringify(BRIDGE_ADDRESS)}, () => console.log('listening'));
`;

interface ProbeHit {
  method: string;
  url: string;
  from: string;
  atMs: number;
}

interface ProbeBoot {
  hits: ProbeHit[];
  /** tcpdump lines of the whole boot. */
  wire: string[];
  /** Serial console without ANSI escapes. */
  serial: string;
  dnsmasq: string;
  t0: number;
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** TERM (or the given signal) to a process group started by spawnInNamespace, KILL after 5 s. */
async function stopGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (pid === undefined) return;
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      /* gone */
    }
  };
  send(signal);
  const deadline = Date.now() + 5_000;
  while (!isGone(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  send('SIGKILL');
}

const readText = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');
const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;?=]*[A-Za-z]/g, '').replace(/\r/g, '\n');

describe('OVMF HTTP boot with a static IPv4 node (StaticIpAddress TRUE) on a private L2 network', () => {
  const ns = `uod-probe-${randomBytes(2).toString('hex')}`;
  let probeDir = '';
  let serverLog = '';

  beforeAll(async () => {
    requireRoot('a network namespace with a bridge and a tap');
    requireTool('ip', 'iproute2');
    requireTool('tcpdump', 'tcpdump');
    requireTool('dnsmasq', 'dnsmasq-base');
    probeDir = await mkdtemp(join(tmpdir(), 'uod-nvram-static-'));
    await ip('netns', 'add', ns);
    const nsip = (...args: string[]) => ip('-n', ns, ...args);
    await nsip('link', 'set', 'lo', 'up');
    await nsip('link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await nsip('addr', 'add', `${BRIDGE_ADDRESS}/24`, 'dev', 'br0');
    await nsip('tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
    await nsip('link', 'set', 'tap0', 'master', 'br0', 'up');
    await nsip('link', 'set', 'br0', 'up');
    const script = join(probeDir, 'server.mjs');
    await writeFile(script, PROBE_SERVER);
    serverLog = join(probeDir, 'http.log');
    spawnInNamespace(ns, process.execPath, [script], serverLog);
    await until('HTTP server in the namespace', 10_000, async () => (readText(serverLog).includes('listening') ? true : undefined), 100);
  });

  afterAll(async () => {
    // Stops whatever still runs inside (server, QEMU, tcpdump, dnsmasq), then deletes the namespace.
    await destroyNamespace(ns);
    if (probeDir) await rm(probeDir, { recursive: true, force: true });
  });

  /**
   * Boots a fresh OVMF_VARS holding Boot0100/BootNext for PROBE_URI (with `opts`) inside the namespace,
   * with tcpdump on the bridge and, if `dhcp`, dnsmasq serving plain DHCP (no boot file). Returns when
   * the firmware GETs the file, or after `deadlineMs`.
   */
  /** Boots until the firmware GETs the URI, or its console shows `giveUp`, or the deadline passes. */
  async function bootInNamespace(label: string, opts: Partial<HttpBootOptions>, dhcp: boolean, deadlineMs: number, giveUp?: RegExp): Promise<ProbeBoot> {
    const vars = join(probeDir, `${label}.fd`);
    const serial = join(probeDir, `${label}.serial.log`);
    const wireLog = join(probeDir, `${label}.tcpdump.log`);
    const dnsmasqLog = join(probeDir, `${label}.dnsmasq.log`);
    await copyFile(OVMF_VARS, vars);
    await setHttpBootNext(vars, { uri: PROBE_URI, mac: MAC, pciDevice: NIC_SLOT, ...opts });

    const seen = readText(serverLog).length;
    const hitsNow = () =>
      readText(serverLog)
        .slice(seen)
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as ProbeHit);
    let tcpdump: number | undefined;
    let dnsmasq: number | undefined;
    let vm: number | undefined;
    try {
      // -l and --immediate-mode: each frame is written as it arrives; -Z root: stay able to write here.
      tcpdump = spawnInNamespace(ns, 'tcpdump', ['-i', 'br0', '-n', '-e', '-l', '--immediate-mode', '-Z', 'root', PROBE_FILTER], wireLog);
      await until(`tcpdump on br0 in ${ns}`, 10_000, async () => (readText(wireLog).includes('listening on') ? true : undefined), 100);
      if (dhcp) {
        dnsmasq = spawnInNamespace(ns, 'dnsmasq', [
          '--no-daemon', '--conf-file=/dev/null', '--port=0', '--interface=br0', '--bind-interfaces',
          '--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h', '--leasefile-ro', `--pid-file=${join(probeDir, 'dnsmasq.pid')}`,
        ], dnsmasqLog);
        await until('dnsmasq started', 10_000, async () => (readText(dnsmasqLog).includes('DHCP, IP range') ? true : undefined), 100);
      }
      const t0 = Date.now();
      vm = spawnInNamespace(ns, 'timeout', [
        '-s', 'KILL', '200', QEMU,
        '-machine', 'q35,accel=tcg', '-nodefaults', '-display', 'none', '-serial', `file:${serial}`, '-m', '256',
        '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
        '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
        '-netdev', 'tap,id=n0,ifname=tap0,script=no,downscript=no',
        '-device', `virtio-net-pci,netdev=n0,mac=${MAC},addr=0x${NIC_SLOT.toString(16)},romfile=`,
      ], join(probeDir, `${label}.qemu.log`));
      const gaveUp = () => giveUp !== undefined && giveUp.test(stripAnsi(readText(serial)));
      while (Date.now() - t0 < deadlineMs && !hitsNow().some((h) => h.method === 'GET') && !gaveUp()) {
        if (isGone(vm)) throw new Error(`QEMU exited early (${label}): ${readText(join(probeDir, `${label}.qemu.log`)).slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 500)); // the capture catches up with the last frames
      return {
        hits: hitsNow(),
        wire: readText(wireLog).split('\n').filter((l) => /^\d\d:/.test(l)),
        serial: stripAnsi(readText(serial)),
        dnsmasq: readText(dnsmasqLog),
        t0,
      };
    } finally {
      await stopGroup(vm);
      await stopGroup(dnsmasq);
      await stopGroup(tcpdump, 'SIGINT');
    }
  }

  /** DHCP requests (DISCOVER/REQUEST) the firmware broadcast from the unconfigured address. */
  const dhcpFromGuest = (wire: string[]) => wire.filter((l) => l.includes(` ${MAC} > ff:ff:ff:ff:ff:ff,`) && /0\.0\.0\.0\.68 > 255\.255\.255\.255\.67: BOOTP\/DHCP, Request/.test(l));
  const dump = (b: ProbeBoot) => `requests ${JSON.stringify(b.hits)}\nwire:\n${b.wire.join('\n')}\nserial:\n${b.serial.slice(-3000)}`;

  test(
    'without a DHCP server the firmware ignores the static address: it only broadcasts DHCP and never fetches the URI',
    { timeout: 240_000 },
    async () => {
      // Ends when the firmware gives up on the option (≈ 60 s after its first DISCOVER): it has moved on.
      const boot = await bootInNamespace('static-no-dhcp', { staticIpv4: { address: STATIC_ADDRESS, prefixLength: 24 } }, false, STATIC_DEADLINE_MS, GAVE_UP);
      // OVMF read the node as written: it prints the option's path with the static fields decoded.
      expect(boot.serial, dump(boot)).toContain(
        `/IPv4(${BRIDGE_ADDRESS},TCP,Static,${STATIC_ADDRESS},0.0.0.0,255.255.255.0)/Uri(${PROBE_URI})`,
      );
      // ... and still ran DHCP for it, gave up ("Not Found"), and never sent HEAD or GET.
      expect(boot.serial, dump(boot)).toContain('>>Start HTTP Boot over IPv4');
      expect(boot.serial, dump(boot)).toMatch(GAVE_UP);
      expect(boot.hits, dump(boot)).toEqual([]);
      expect(dhcpFromGuest(boot.wire).length, dump(boot)).toBeGreaterThanOrEqual(2);
      // The static address never appears on the wire: no ARP for it, no TCP from it.
      expect(boot.wire.filter((l) => l.includes(STATIC_ADDRESS)), dump(boot)).toEqual([]);
      console.log(
        `static-no-dhcp: no request until the firmware gave up; ${dhcpFromGuest(boot.wire).length} DHCP requests from ${MAC}, ` +
          `none of ${boot.wire.length} captured frames from or to ${STATIC_ADDRESS}`,
      );
    },
  );

  test.each([
    ['static-dnsmasq', { staticIpv4: { address: STATIC_ADDRESS, prefixLength: 24 } }],
    ['dhcp-dnsmasq', {}],
  ] as const)('%s: with dnsmasq on the bridge the same option is fetched, from the DHCP lease', { timeout: 240_000 }, async (label, opts) => {
    const boot = await bootInNamespace(label, opts, true, 90_000);
    const get = boot.hits.find((h) => h.method === 'GET' && h.url === '/boot.efi');
    expect(get, `no GET within 90 s: ${dump(boot)}`).toBeDefined();
    const head = boot.hits.find((h) => h.method === 'HEAD' && h.url === '/boot.efi');
    expect(head, dump(boot)).toBeDefined();
    // The address the firmware used is dnsmasq's lease, whatever the IPv4 node said.
    const lease = /DHCPACK\(br0\) (192\.0\.2\.\d+) 52:54:00:12:34:56/.exec(boot.dnsmasq)?.[1];
    expect(lease, boot.dnsmasq).toMatch(/^192\.0\.2\.(1[0-4]\d|150)$/);
    expect(get!.from).toBe(lease);
    expect(head!.from).toBe(lease);
    expect(boot.wire.filter((l) => l.includes(STATIC_ADDRESS)), dump(boot)).toEqual([]);
    expect(dhcpFromGuest(boot.wire).length).toBeGreaterThanOrEqual(2); // DISCOVER and REQUEST
    console.log(`${label}: GET from ${get!.from} at ${((get!.atMs - boot.t0) / 1000).toFixed(1)} s after QEMU started (lease ${lease})`);
  });
});
