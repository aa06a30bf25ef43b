// The MachineDriver for a simulated server: no emulator, the ephemeral OS's own userland booted by
// systemd-nspawn in the server's network namespace (a veth on the lab's bridge with the server's MAC).
// At power-on the "firmware" reads the artifact from the service as a real one would (fetch.ts), the
// container gets exactly that artifact's overlay on the lab's shared base (rootfs.ts), and its disks,
// udev entries and identity (devices.ts). What it cannot cover (firmware, kernel, drivers): lab/README.md.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BootPlan, MachineDriver, StopReason } from '../machine/types.js';
import type { DriverLog } from '../qemu/driver.js';
import { locateBootImage } from './boot-image.js';
import { ensureCgroupMounts, removeServerCgroups, serverCgroups } from './cgroups.js';
import { DeviceView, detachDisk, rootPartition, type Identity, type SimulatedDisk } from './devices.js';
import { downloadBootFile, readMedia } from './fetch.js';
import { mountRoot, removeRoot, unpackOverlay, type BaseRoot } from './rootfs.js';

const run = promisify(execFile);

export interface SimulatedHardware extends Identity {
  /** The server's network namespace (ip netns), holding its NICs. */
  netns: string;
  /** Each NIC's lab-side veth (in the lab's namespace, on a bridge): setLink pulls its cable. */
  nics: { mac: string; tap: string }[];
  disks: SimulatedDisk[];
  console: string;
  /** Per-boot files: the fetched artifact, the upper directory, the device view. */
  stateDir: string;
  base: BaseRoot;
  /** The server's link speed in Mbit/s for reading its boot artifact (0: unpaced). */
  linkMbps: number;
}

// systemd-nspawn's exit status when the container rebooted.
const EXIT_REBOOT = 133;
// SIGRTMIN+4 (glibc numbering): systemd as PID 1 powers off, as after the ACPI power button.
const SIGRTMIN_PLUS_4 = 38;

/** The inode of a namespace file (equal inodes: the same namespace), or null when it is gone. */
function inode(path: string): number | null {
  try {
    return statSync(path).ino;
  } catch {
    return null;
  }
}

function readProc(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export class NspawnDriver implements MachineDriver {
  private boot: { abort: AbortController; done: Promise<void>; child: ChildProcess | null } | null = null;
  private cutting = false;
  private readonly listeners: ((r: StopReason) => void)[] = [];

  constructor(private readonly hw: SimulatedHardware, private readonly log: DriverLog) {
    // The container must not outlive its BMC.
    process.once('exit', () => this.killContainer());
  }

  onStop(listener: (r: StopReason) => void): void {
    this.listeners.push(listener);
  }

  private console(line: string): void {
    appendFileSync(this.hw.console, `[simulated ${new Date().toISOString()}] ${line}\n`);
  }

  async powerOn(plan: BootPlan): Promise<void> {
    if (this.boot) throw new Error('the machine is already running');
    const abort = new AbortController();
    const boot: NonNullable<NspawnDriver['boot']> = { abort, child: null, done: Promise.resolve() };
    this.boot = boot;
    // Powered on now; what the firmware does next takes its time, as on a server.
    boot.done = this.run(plan, boot).catch((err: Error) => {
      if (abort.signal.aborted) return;
      // A boot that fails leaves the server on with nothing running, as a server stuck in its firmware.
      this.log('simulated boot failed', { error: err.message });
      this.console(`boot failed: ${err.message}`);
    });
  }

  private bootDir(): string {
    return join(this.hw.stateDir, 'boot');
  }

  private async run(plan: BootPlan, boot: NonNullable<NspawnDriver['boot']>): Promise<void> {
    const signal = boot.abort.signal;
    const dir = this.bootDir();
    await removeRoot(dir, join(dir, 'root'));
    const artifact = join(dir, 'artifact');
    await mkdir(dir, { recursive: true });
    // Cables pulled during the last run are plugged in again, as for QEMU's NICs.
    for (const nic of this.hw.nics) await run('ip', ['link', 'set', nic.tap, 'up']);
    const link = { mbps: this.hw.linkMbps, signal };
    const started = Date.now();
    const root = join(dir, 'root');
    let cmdline: string[] = [];
    // The firmware's order: the planned device; by default the disks, then the CD when one is inserted.
    const disk = plan.device === 'hdd' || plan.device === 'default' ? await this.bootableDisk() : undefined;
    if (disk) {
      this.console(`booting from the disk ${disk.serial} (${disk.partition})`);
      await mkdir(root, { recursive: true });
      await run('mount', [disk.partition, root]);
    } else {
      if (plan.device === 'http' && plan.httpBootUri) {
        this.console(`UEFI HTTP boot: GET ${plan.httpBootUri}`);
        await downloadBootFile(plan.httpBootUri, artifact, link);
      } else if (plan.mediaUrl && plan.device !== 'hdd') {
        this.console(`virtual media: reading ${plan.mediaUrl}`);
        await readMedia(plan.mediaUrl, artifact, link);
      } else {
        throw new Error(`no bootable device (boot ${plan.device}${plan.mediaUrl ? '' : ', no media'}, no disk with a root partition)`);
      }
      const image = await locateBootImage(artifact);
      this.log('simulated artifact read', { ms: Date.now() - started, initrdBytes: image.initrd.size });
      const upper = join(dir, 'upper');
      await unpackOverlay(artifact, image.initrd, this.hw.base, upper);
      await rm(artifact, { force: true }); // unpacked: the RAM copy a firmware keeps is not needed
      await mountRoot(this.hw.base.lowerDir, upper, join(dir, 'work'), root);
      // The UKI's command line goes to PID 1 (systemd reads its kernel options there in a container).
      cmdline = image.cmdline.split(/\s+/).filter(Boolean);
    }
    const devices = await DeviceView.create(join(dir, 'devices'), this.hw, this.hw.disks);
    await ensureCgroupMounts();
    const cgroups = await serverCgroups(this.hw.netns);
    signal.throwIfAborted();
    const args = [
      '--quiet', '--register=no', '--keep-unit', '--boot', '--console=read-only',
      `--directory=${root}`, `--machine=${this.hw.name}`, `--uuid=${this.hw.uuid}`,
      // --private-network with the path: the namespace is the container's own (CAP_NET_ADMIN, and a
      // sysfs that shows its NICs, not the host's).
      '--private-network', `--network-namespace-path=/run/netns/${this.hw.netns}`,
      '--link-journal=no', '--resolv-conf=off', '--timezone=off',
      ...devices.nspawnArgs,
      '--', ...cmdline, 'systemd.journald.forward_to_console=1',
    ];
    this.log('nspawn start', { args: args.join(' ') });
    const out = openSync(this.hw.console, 'a');
    // nspawn starts in the server's own cgroups (cgroups.ts): the shell joins them, then becomes nspawn.
    const child = spawn('sh', ['-c', 'for g in $UOD_CGROUPS; do echo $$ > "$g/cgroup.procs"; done; exec systemd-nspawn "$@"', 'systemd-nspawn', ...args],
      { stdio: ['ignore', out, out], detached: true, env: { ...process.env, UOD_CGROUPS: cgroups.join(' ') } });
    closeSync(out);
    boot.child = child;
    // udev's part while it runs: partitions the OS creates get their nodes and database entries. The
    // container's PID 1 is looked up once (a scan of /proc), the partitions every 100 ms (one readdir).
    let init: number | undefined;
    const udev = setInterval(() => {
      init ??= this.initPid();
      if (init !== undefined) devices.sync(init).catch((err: Error) => this.log('partition sync failed', { error: err.message }));
    }, 100);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearInterval(udev);
    this.log('nspawn exit', { code });
    await this.cleanUp();
    if (this.boot !== boot) return;
    this.boot = null;
    const reason: StopReason = this.cutting ? 'power-cut' : code === 0 ? 'guest-shutdown' : code === EXIT_REBOOT ? 'guest-reset' : 'crash';
    for (const l of this.listeners) l(reason);
  }

  private async cleanUp(): Promise<void> {
    removeServerCgroups((ns) => ns === this.hw.netns);
    await removeRoot(this.bootDir(), join(this.bootDir(), 'root'));
    for (const disk of this.hw.disks) await detachDisk(disk.path);
  }

  /** The container's processes (everything in the server's network namespace). */
  private containerPids(): number[] {
    const ns = inode(`/run/netns/${this.hw.netns}`);
    if (ns === null) return [];
    return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => inode(`/proc/${pid}/ns/net`) === ns);
  }

  private killContainer(): void {
    for (const pid of this.containerPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  async powerOff(): Promise<void> {
    const boot = this.boot;
    if (!boot) return;
    this.cutting = true;
    try {
      boot.abort.abort(new Error('power cut'));
      if (boot.child) {
        this.killContainer();
        await boot.done;
      } else {
        // Still in the firmware: nothing runs yet.
        await boot.done;
        this.boot = null;
        await this.cleanUp();
        for (const l of this.listeners) l('power-cut');
      }
    } finally {
      this.cutting = false;
    }
  }

  /** The container's PID 1, as the host numbers it. */
  private initPid(): number | undefined {
    return this.containerPids().find((pid) => /^NSpid:\s+\d+\s+1$/m.test(readProc(`/proc/${pid}/status`)));
  }

  /** The first disk (in the server's order) with a root partition: what its firmware would boot. */
  private async bootableDisk(): Promise<{ serial: string; partition: string } | undefined> {
    for (const disk of this.hw.disks) {
      const partition = await rootPartition(disk.path);
      if (partition) return { serial: disk.serial, partition };
    }
    return undefined;
  }

  async pressPowerButton(): Promise<void> {
    const init = this.initPid();
    if (init !== undefined) process.kill(init, SIGRTMIN_PLUS_4);
  }

  async setLink(nic: number, up: boolean): Promise<void> {
    if (!this.boot) throw new Error('the machine is not running: its cables are plugged in again at the next power-on');
    await run('ip', ['link', 'set', this.hw.nics[nic]!.tap, up ? 'up' : 'down']);
  }

  async changeMedia(url: string | undefined): Promise<void> {
    // The OS of a simulated server has no CD drive: a new image counts at the next power-on.
    this.log('simulated media change', { url: url ?? null });
  }
}
