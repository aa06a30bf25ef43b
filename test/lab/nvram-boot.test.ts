// Proof that the store written by lab/bmc/qemu/nvram.ts makes OVMF itself HTTP-boot the stored URI:
// QEMU with plain user-mode DHCP (no boot file), OVMF's own network stack (no iPXE), and a host
// HTTP server that records what the firmware asks for.
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { readVariables, setHttpBootNext, type EfiVariable } from '../../lab/bmc/qemu/nvram.js';

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
