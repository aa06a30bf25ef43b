// Boots boot artifacts (UKI, ISO, disk image, UEFI HTTP Boot URL) in QEMU + OVMF/AAVMF for the
// end-to-end tests, and watches the serial console for marker lines.
//
// API
//   bootVm(opts: BootOptions): Promise<RunningVm>   starts QEMU; resolves once the process runs.
//   serialConsole(arch): 'ttyS0' | 'ttyAMA0'         the console= the guest's cmdline should name.
//   stripAnsi(text): string                         what output() and line matching see.
//   liveProcessesInGroup(pgid): number[]            running (non-zombie) processes of a VM's group.
//
//   BootOptions
//     arch        'amd64' (q35 + OVMF 4M) | 'arm64' (virt, cpu max + AAVMF)
//     media       { kind: 'kernel', path }  UKI run by the firmware as an EFI application (-kernel,
//                                           never -append: that would override the UKI's .cmdline)
//                 { kind: 'cdrom', path }   ISO as a CD (amd64: AHCI -cdrom; arm64: virtio-scsi scsi-cd)
//                 { kind: 'disk', path }    raw image (e.g. the ISO) as a virtio-blk disk, writes discarded
//                 { kind: 'http', url, via? }  UEFI HTTP Boot of a guest-visible URL, handed out as the
//                                           DHCP bootfile of the first NIC. via 'firmware' (default):
//                                           OVMF/AAVMF's own HTTP Boot with PXE turned off (HEAD, then
//                                           GET, as real servers do). via 'ipxe' (amd64): the virtio-net
//                                           iPXE ROM; iPXE passes the image name as load options, which
//                                           replace the UKI's embedded cmdline (console= is lost).
//                                           With restrict (the default) the URL's host must be a
//                                           guestfwd address.
//     timeoutMs   hard cap on the VM's life: QEMU is killed when it expires (required)
//     serialLog   file that receives the raw serial output (required)
//     memoryMiB   default 1024 (a large initramfs needs it: OVMF fails to load the UKI with less)
//     cpus        default 1
//     guestfwd    [{ guestAddr, guestPort, hostPort }]: guest connections to guestAddr:guestPort reach
//                 127.0.0.1:hostPort on the host (one busybox nc per connection), on the first NIC
//     hostfwd     [{ hostPort, guestPort }]: host 127.0.0.1:hostPort reaches the guest's guestPort (TCP)
//     restrict    default true: the guest reaches only the guestfwd addresses (no internet, no host)
//     extraNics   number of additional NICs; NIC i (0 = the first) is on its own user network
//                 10.0.<2+i>.0/24 and gets 10.0.<2+i>.15 by DHCP
//     nicModel    default 'virtio-net-pci' (also 'e1000', 'e1000e')
//     disks       [{ kind: 'virtio-blk'|'nvme'|'scsi-hd', sizeMiB, serial, wwn? }]: empty sparse disks
//     smbiosSerial  SMBIOS type 1 system serial number
//     extraArgs   appended to the QEMU command line verbatim
//
//   RunningVm
//     waitForLine(re, timeoutMs)  first serial line (ANSI escapes and CR removed) matching re, from the
//                                 start of the output; rejects on timeout or when QEMU exits first
//     lines()                     complete serial lines so far, cleaned
//     output()                    all serial output so far, cleaned
//     exited                      resolves with QEMU's exit code (0 after a guest power-off), or null
//                                 when it was killed; never rejects
//     kill()                      kills QEMU and its guestfwd helpers; resolves once it is gone
//     qmp(execute, args?)         runs one QMP command on the VM's QMP socket (a unix socket in its
//                                 private directory) and resolves with its "return" value; rejects on an
//                                 "error" reply or when QEMU is gone. E.g. qmp('system_powerdown') presses
//                                 the ACPI power button (what a BMC does for Redfish GracefulShutdown);
//                                 after the guest powers off, exited resolves with 0.
//     macs                        MAC address of each NIC, in order (first one is the boot NIC)
//     pgid                        process group of QEMU, its watchdog and its guestfwd helpers
//     args, startedAt (performance.now() at spawn), timedOut() (killed because timeoutMs expired)
//
// Environment: UOD_QEMU_ACCEL overrides the accelerator (default tcg; e.g. kvm).
// No orphans: QEMU runs in its own process group under `timeout` (a watchdog that outlives this
// process), the whole group is killed on timeoutMs, on kill(), and when this process exits.

import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { performance } from 'node:perf_hooks';
import { mediaBlockdev } from '../../lab/bmc/qemu/command-line.js';

export type Arch = 'amd64' | 'arm64';

export type BootMedia =
  | { kind: 'kernel'; path: string }
  // path: a local file; url: streamed from an HTTP(S) server by QEMU's curl driver (Range reads),
  // the way a BMC's virtual media reads an image.
  | { kind: 'cdrom'; path: string }
  | { kind: 'cdrom'; url: string }
  | { kind: 'disk'; path: string }
  | { kind: 'disk'; url: string }
  | { kind: 'http'; url: string; via?: 'firmware' | 'ipxe' };

export interface GuestForward {
  guestAddr: string;
  guestPort: number;
  hostPort: number;
}

export interface HostForward {
  hostPort: number;
  guestPort: number;
}

export interface ExtraDisk {
  kind: 'virtio-blk' | 'nvme' | 'scsi-hd';
  sizeMiB: number;
  serial: string;
  wwn?: string;
}

export interface BootOptions {
  arch: Arch;
  media: BootMedia;
  timeoutMs: number;
  serialLog: string;
  memoryMiB?: number;
  cpus?: number;
  guestfwd?: GuestForward[];
  hostfwd?: HostForward[];
  restrict?: boolean;
  extraNics?: number;
  nicModel?: 'virtio-net-pci' | 'e1000' | 'e1000e';
  disks?: ExtraDisk[];
  smbiosSerial?: string;
  extraArgs?: string[];
}

export interface RunningVm {
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  lines(): string[];
  output(): string;
  exited: Promise<number | null>;
  kill(): Promise<void>;
  qmp(execute: string, args?: Record<string, unknown>): Promise<unknown>;
  timedOut(): boolean;
  readonly macs: string[];
  readonly args: string[];
  readonly pgid: number;
  readonly startedAt: number;
}

interface Firmware {
  qemu: string;
  code: string;
  vars: string;
  machine: (accel: string) => string[];
}

const FIRMWARE: Record<Arch, Firmware> = {
  amd64: {
    qemu: 'qemu-system-x86_64',
    code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
    vars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
    machine: (accel) => ['-machine', `q35,accel=${accel}`, ...(accel === 'tcg' ? [] : ['-cpu', 'host'])],
  },
  arm64: {
    qemu: 'qemu-system-aarch64',
    code: '/usr/share/AAVMF/AAVMF_CODE.fd',
    vars: '/usr/share/AAVMF/AAVMF_VARS.fd',
    // pauth-impdef: the architected pointer-authentication algorithm is very slow under TCG.
    machine: (accel) => ['-machine', `virt,accel=${accel}`, '-cpu', accel === 'tcg' ? 'max,pauth-impdef=on' : 'host'],
  },
};

const IPXE_VIRTIO_ROM = '/usr/lib/ipxe/qemu/efi-virtio.rom';

/** The backend of a boot CD or disk: a local file, or an image streamed over HTTP(S). */
function bootDrive(id: string, media: { path: string } | { url: string }, localFlags: string): string[] {
  if ('path' in media) return ['-drive', `if=none,id=${id},format=raw,${localFlags},file=${media.path}`];
  // Read-only either way: nothing may write back to the server's artifact.
  return ['-blockdev', JSON.stringify(mediaBlockdev(media.url, id))];
}

export function serialConsole(arch: Arch): 'ttyS0' | 'ttyAMA0' {
  return arch === 'amd64' ? 'ttyS0' : 'ttyAMA0';
}

// CSI sequences (colours, cursor moves from the firmware's console), OSC strings, charset selection.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>cDEHMNOZ78]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '').replace(/\r/g, '');
}

function busyboxPath(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new Error('guestfwd needs busybox (package busybox-static) for its nc');
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

// Processes of a process group that still run (zombies do not count: a container's init may take
// a second or more to reap what it inherits). Linux /proc.
export function liveProcessesInGroup(pgid: number): number[] {
  const alive: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') alive.push(Number(entry));
  }
  return alive;
}

// `close` can come while QEMU or a guestfwd nc of the group is still being torn down: exited
// resolves only once no process of the group runs.
async function waitGroupGone(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return;
  for (let i = 0; i < 250; i++) {
    if (liveProcessesInGroup(child.pid).length === 0) return;
    if (i === 50) killGroup(child, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL');
  });
}

// One QMP session: greeting, capabilities negotiation, the command, its reply (events are skipped).
function qmpCommand(socket: string, execute: string, args: Record<string, unknown> | undefined, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buffered = '';
    let step: 'greeting' | 'capabilities' | 'command' = 'greeting';
    const finish = (err: Error | null, value?: unknown): void => {
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`QMP ${execute}: no reply within ${timeoutMs} ms`)), timeoutMs);
    const send = (cmd: object): void => {
      conn.write(`${JSON.stringify(cmd)}\n`);
    };
    conn.setEncoding('utf8');
    conn.on('error', (err) => finish(new Error(`QMP ${execute}: ${err.message}`)));
    conn.on('close', () => finish(new Error(`QMP ${execute}: connection closed before the reply`)));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        let msg: { QMP?: unknown; event?: string; return?: unknown; error?: { class: string; desc: string } };
        try {
          msg = JSON.parse(line);
        } catch {
          return finish(new Error(`QMP ${execute}: unexpected reply ${line.slice(0, 200)}`));
        }
        if (msg.event !== undefined) continue;
        if (msg.error) return finish(new Error(`QMP ${step === 'command' ? execute : 'qmp_capabilities'}: ${msg.error.class}: ${msg.error.desc}`));
        if (step === 'greeting' && msg.QMP !== undefined) {
          step = 'capabilities';
          send({ execute: 'qmp_capabilities' });
        } else if (step === 'capabilities' && 'return' in msg) {
          step = 'command';
          send(args ? { execute, arguments: args } : { execute });
        } else if (step === 'command' && 'return' in msg) {
          return finish(null, msg.return);
        }
      }
    });
  });
}

function mac(index: number): string {
  return `52:54:00:75:6f:${(0x10 + index).toString(16).padStart(2, '0')}`;
}

async function sparseFile(path: string, sizeMiB: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(sizeMiB * 1024 * 1024);
  } finally {
    await fh.close();
  }
}

export async function bootVm(opts: BootOptions): Promise<RunningVm> {
  const fw = FIRMWARE[opts.arch];
  const accel = process.env.UOD_QEMU_ACCEL || 'tcg';
  const restrict = opts.restrict ?? true;
  const nicModel = opts.nicModel ?? 'virtio-net-pci';
  const workDir = await mkdtemp(join(tmpdir(), `uod-vm-${opts.arch}-`));

  try {
    // The firmware writes its boot variables: every VM needs its own copy.
    const vars = join(workDir, 'vars.fd');
    await copyFile(fw.vars, vars);

    const args: string[] = [
      ...fw.machine(accel),
      '-m', String(opts.memoryMiB ?? 1024),
      '-smp', String(opts.cpus ?? 1),
      '-display', 'none',
      '-monitor', 'none',
      '-qmp', `unix:${join(workDir, 'qmp.sock')},server=on,wait=off`,
      '-serial', 'stdio',
      '-no-reboot',
      '-drive', `if=pflash,format=raw,readonly=on,file=${fw.code}`,
      '-drive', `if=pflash,format=raw,file=${vars}`,
    ];

    let scsiController = false;
    const needScsi = (): void => {
      if (scsiController) return;
      scsiController = true;
      args.push('-device', 'virtio-scsi-pci,id=scsi0');
    };

    const media = opts.media;
    switch (media.kind) {
      case 'kernel':
        args.push('-kernel', media.path);
        break;
      case 'cdrom':
        args.push(...bootDrive('cd0', media, 'media=cdrom,readonly=on'));
        if (opts.arch === 'amd64') {
          args.push('-device', 'ide-cd,drive=cd0,bootindex=0');
        } else {
          needScsi();
          args.push('-device', 'scsi-cd,drive=cd0,bus=scsi0.0,bootindex=0');
        }
        break;
      case 'disk':
        args.push(...bootDrive('boot0', media, 'snapshot=on'), '-device', 'virtio-blk-pci,drive=boot0,bootindex=0');
        break;
      case 'http':
        break;
    }

    // NICs: the first carries the forwards (and the HTTP boot bootfile); extra ones get their own
    // user network so that each one gets a DHCP lease.
    const macs: string[] = [];
    const nicCount = 1 + (opts.extraNics ?? 0);
    for (let i = 0; i < nicCount; i++) {
      // Distinct subnets: two NICs on identical 10.0.2.0/24 networks would leave the guest's
      // routing (and so whether guestfwd addresses are reachable) to chance.
      const netdev = [`user`, `id=n${i}`, `net=10.0.${2 + i}.0/24`];
      if (restrict) netdev.push('restrict=on');
      if (i === 0) {
        if (opts.guestfwd?.length) {
          const nc = busyboxPath();
          for (const f of opts.guestfwd) {
            netdev.push(`guestfwd=tcp:${f.guestAddr}:${f.guestPort}-cmd:${nc} nc 127.0.0.1 ${f.hostPort}`);
          }
        }
        for (const f of opts.hostfwd ?? []) netdev.push(`hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`);
        if (media.kind === 'http') netdev.push(`bootfile=${media.url.replace(/,/g, ',,')}`);
      }
      macs.push(mac(i));
      const device = [nicModel, `netdev=n${i}`, `mac=${macs[i]}`];
      if (i === 0 && media.kind === 'http') {
        device.push('bootindex=0');
        if (media.via === 'ipxe') device.push(`romfile=${IPXE_VIRTIO_ROM}`);
        else device.push('romfile=');
      } else {
        device.push('romfile=');
      }
      args.push('-netdev', netdev.join(','), '-device', device.join(','));
    }

    for (const [i, disk] of (opts.disks ?? []).entries()) {
      const file = join(workDir, `disk${i}.raw`);
      await sparseFile(file, disk.sizeMiB);
      args.push('-drive', `if=none,id=d${i},format=raw,file=${file}`);
      switch (disk.kind) {
        case 'virtio-blk':
          args.push('-device', `virtio-blk-pci,drive=d${i},serial=${disk.serial}`);
          break;
        case 'nvme':
          args.push('-device', `nvme,drive=d${i},serial=${disk.serial}`);
          break;
        case 'scsi-hd':
          needScsi();
          args.push('-device', `scsi-hd,drive=d${i},bus=scsi0.0,serial=${disk.serial}${disk.wwn ? `,wwn=${disk.wwn}` : ''}`);
          break;
      }
    }

    if (media.kind === 'http' && media.via !== 'ipxe') {
      // The firmware's own HTTP Boot comes after PXEv4/PXEv6 attempts that cost ~75 s: turn PXE off.
      args.push('-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n',
        '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n',
        '-fw_cfg', 'name=opt/org.tianocore/IPv6Support,string=n');
    }
    if (opts.smbiosSerial !== undefined) args.push('-smbios', `type=1,serial=${opts.smbiosSerial}`);
    args.push(...(opts.extraArgs ?? []));

    return await startQemu(fw.qemu, args, opts, workDir, macs);
  } catch (err) {
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }
}

async function startQemu(qemu: string, args: string[], opts: BootOptions, workDir: string, macs: string[]): Promise<RunningVm> {
  installExitHook();
  // The watchdog outlives a crashed test process: QEMU cannot run past timeoutMs + 15 s.
  const watchdogSeconds = Math.ceil(opts.timeoutMs / 1000) + 10;
  const child = spawn('timeout', ['--kill-after=5', String(watchdogSeconds), qemu, ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const startedAt = performance.now();

  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  live.add(child);

  const log = createWriteStream(opts.serialLog);
  let clean = '';
  let stderr = '';
  let pending = '';
  const completeLines: string[] = [];
  type Waiter = { re: RegExp; resolve: (line: string) => void };
  const waiters = new Set<Waiter>();

  const onLine = (line: string): void => {
    completeLines.push(line);
    for (const w of waiters) {
      if (w.re.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };

  const decoder = new StringDecoder('utf8');
  child.stdout!.on('data', (buf: Buffer) => {
    log.write(buf);
    const chunk = decoder.write(buf);
    // Escapes can be split across chunks: clean only up to the last complete line.
    pending += chunk;
    const nl = pending.lastIndexOf('\n');
    if (nl < 0) return;
    const text = stripAnsi(pending.slice(0, nl + 1));
    pending = pending.slice(nl + 1);
    clean += text;
    const parts = text.split('\n');
    parts.pop();
    for (const line of parts) onLine(line);
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });

  let timedOut = false;
  let done = false;
  const exited = new Promise<number | null>((resolve) => {
    child.once('close', (code, signal) => {
      done = true;
      live.delete(child);
      clearTimeout(timer);
      // timeout(1) reports 124 when its watchdog fired and 128+n when QEMU died of signal n;
      // QEMU itself exits with 0 (guest power-off) or 1.
      const result = signal !== null || code === null || code >= 124 ? null : code;
      pending += decoder.end();
      if (pending) {
        const rest = stripAnsi(pending);
        clean += rest;
        pending = '';
        onLine(rest);
      }
      log.end(() => {
        void waitGroupGone(child)
          .then(() => rm(workDir, { recursive: true, force: true }))
          .finally(() => resolve(result));
      });
      for (const w of waiters) w.resolve('');
    });
  });

  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGKILL');
  }, opts.timeoutMs);

  const describe = (): string => {
    const tail = clean.split('\n').slice(-25).join('\n');
    return `qemu ${args.join(' ')}\n--- last serial lines ---\n${tail}${stderr ? `\n--- qemu stderr ---\n${stderr}` : ''}`;
  };

  const vm: RunningVm = {
    waitForLine(re, timeoutMs) {
      const probe = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
      const seen = completeLines.find((l) => probe.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      if (done) return Promise.reject(new Error(`QEMU exited before a line matched ${re}\n${describe()}`));
      return new Promise<string>((resolve, reject) => {
        const waiter: Waiter = {
          re: probe,
          resolve: (line) => {
            clearTimeout(t);
            waiters.delete(waiter);
            if (done && !probe.test(line)) {
              reject(new Error(`QEMU ${timedOut ? 'was killed after timeoutMs' : 'exited'} before a line matched ${re}\n${describe()}`));
            } else {
              resolve(line);
            }
          },
        };
        const t = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no serial line matched ${re} within ${timeoutMs} ms\n${describe()}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    lines: () => [...completeLines],
    output: () => clean + stripAnsi(pending),
    exited,
    async kill() {
      if (!done) {
        killGroup(child, 'SIGKILL');
      }
      await exited;
    },
    qmp(execute, qmpArgs) {
      if (done) return Promise.reject(new Error(`QMP ${execute}: QEMU has exited`));
      return qmpCommand(join(workDir, 'qmp.sock'), execute, qmpArgs);
    },
    timedOut: () => timedOut,
    macs,
    args: [qemu, ...args],
    pgid: child.pid!,
    startedAt,
  };
  return vm;
}
