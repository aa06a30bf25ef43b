// The MachineDriver for QEMU: one QEMU process per power-on. QMP tells why it stopped (SHUTDOWN
// reason: the guest powered off, or rebooted, which -no-reboot turns into an exit), presses the ACPI
// power button, and swaps the CD's medium while the machine runs. HttpBootUri is written into the
// server's own NVRAM before start-up, as a BMC sets it in the BIOS: the firmware then fetches it itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { BootPlan, MachineDriver, StopReason } from '../machine/types.js';
import { CD_DEVICE_ID, mediaBlockdev, netdevId, qemuArgs, type Hardware } from './command-line.js';
import { clearBootNext, setHttpBootNext } from './nvram.js';
import { enrollSecureBootKeys } from './secure-boot-vars.js';
import { QmpClient } from './qmp.js';
import { killProcessGroup } from './process-group.js';
import { startTpm } from './tpm.js';

export interface DriverLog {
  (event: string, fields?: Record<string, unknown>): void;
}

export class QemuDriver implements MachineDriver {
  private child: ChildProcess | null = null;
  private tpm: ChildProcess | null = null;
  private qmp: QmpClient | null = null;
  private lastShutdownReason: string | null = null;
  private cutting = false;
  private exited: Promise<void> = Promise.resolve();
  private readonly listeners: ((r: StopReason) => void)[] = [];
  private mediaCount = 0;
  private mediaNode: string | null = null;

  constructor(
    private readonly hw: Hardware,
    private readonly log: DriverLog,
    private readonly qemuBinary = 'qemu-system-x86_64',
  ) {
    // QEMU must not outlive its BMC.
    process.once('exit', () => this.killNow());
  }

  onStop(listener: (r: StopReason) => void): void {
    this.listeners.push(listener);
  }

  async powerOn(plan: BootPlan): Promise<void> {
    if (this.child) throw new Error('the machine is already running');
    if (plan.device === 'http' && plan.httpBootUri) {
      const nic = this.hw.nics[0]!;
      // A static address from the BIOS setup goes into the IPv4 node, as a vendor's firmware writes it;
      // OVMF runs DHCP whatever the node says (lab/README.md "Static address in the HTTP boot entry").
      const address = plan.httpBootAddress;
      await setHttpBootNext(this.hw.nvram, {
        uri: plan.httpBootUri, mac: nic.mac, pciDevice: nic.pciSlot, pciFunction: 0, description: 'UEFI HTTP Boot (BMC)',
        ...(address ? { staticIpv4: { address: address.address, prefixLength: address.prefixLength, ...(address.gateway ? { gateway: address.gateway } : {}) } } : {}),
      });
    } else {
      await clearBootNext(this.hw.nvram);
    }
    // The BMC's Secure Boot setup reaches the firmware through its NVRAM, before it starts.
    if (plan.secureBoot) await enrollSecureBootKeys(this.hw.nvram, { pk: plan.secureBoot.pk, kek: plan.secureBoot.kek, db: plan.secureBoot.db }, plan.secureBoot.enabled);
    rmSync(this.hw.qmpSocket, { force: true });
    // A fresh swtpm per power-on: the TPM resets with the machine.
    if (this.hw.tpm) this.tpm = await startTpm(this.hw.tpm);
    const args = qemuArgs(this.hw, plan);
    this.log('qemu start', { args: args.join(' ') });
    const child = spawn(this.qemuBinary, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    this.child = child;
    this.lastShutdownReason = null;
    this.mediaNode = plan.mediaUrl ? 'media0' : null;
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.child = null;
        killProcessGroup(this.tpm);
        this.tpm = null;
        this.qmp?.close();
        this.qmp = null;
        const reason = this.stopReason();
        this.log('qemu exit', { code, signal, reason, stderr: stderr.trim() || undefined });
        resolve();
        for (const l of this.listeners) l(reason);
      });
    });
    try {
      const qmp = await QmpClient.connect(this.hw.qmpSocket);
      this.qmp = qmp;
      qmp.onEvent((e) => {
        if (e.event === 'SHUTDOWN') this.lastShutdownReason = String(e.data?.reason ?? '');
        if (['SHUTDOWN', 'RESET', 'POWERDOWN'].includes(e.event)) this.log(`qmp ${e.event}`, e.data);
      });
    } catch (err) {
      this.killNow();
      await this.exited;
      throw new Error(`QEMU did not start: ${stderr.trim() || (err as Error).message}`);
    }
  }

  async powerOff(): Promise<void> {
    if (!this.child) return;
    this.cutting = true;
    try {
      this.killNow();
      await this.exited;
    } finally {
      this.cutting = false;
    }
  }

  async pressPowerButton(): Promise<void> {
    await this.qmp?.execute('system_powerdown');
  }

  async setLink(nic: number, up: boolean): Promise<void> {
    if (!this.qmp) throw new Error('the machine is not running: its cables are plugged in again at the next power-on');
    await this.qmp.execute('set_link', { name: netdevId(nic), up });
  }

  async changeMedia(url: string | undefined): Promise<void> {
    const qmp = this.qmp;
    if (!qmp) return;
    await qmp.execute('blockdev-open-tray', { id: CD_DEVICE_ID, force: true });
    if (this.mediaNode) {
      await qmp.execute('blockdev-remove-medium', { id: CD_DEVICE_ID });
      await qmp.execute('blockdev-del', { 'node-name': this.mediaNode });
      this.mediaNode = null;
    }
    if (url) {
      const node = `media${++this.mediaCount}`;
      await qmp.execute('blockdev-add', mediaBlockdev(url, node));
      await qmp.execute('blockdev-insert-medium', { id: CD_DEVICE_ID, 'node-name': node });
      this.mediaNode = node;
    }
    await qmp.execute('blockdev-close-tray', { id: CD_DEVICE_ID });
  }

  private stopReason(): StopReason {
    if (this.cutting) return 'power-cut';
    switch (this.lastShutdownReason) {
      case 'guest-shutdown':
        return 'guest-shutdown';
      case 'guest-reset':
        return 'guest-reset';
      case 'guest-panic':
      case null:
        return 'crash';
      default:
        return 'power-cut';
    }
  }

  private killNow(): void {
    killProcessGroup(this.tpm);
    killProcessGroup(this.child);
  }
}
