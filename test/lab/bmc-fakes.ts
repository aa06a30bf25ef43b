// A MachineDriver and MediaProbe that record what the machine model asks of them, so the power state
// machine and the Redfish adapter run without QEMU.
import { Machine, MachineError, type MachineCapabilities, type MachineTimings, type MediaProbe } from '../../lab/bmc/machine/machine.js';
import type { Quirk } from '../../lab/bmc/machine/quirks.js';
import type { BootPlan, MachineDriver, StopReason } from '../../lab/bmc/machine/types.js';

export type DriverCall =
  | { op: 'powerOn'; plan: BootPlan }
  | { op: 'powerOff' }
  | { op: 'pressPowerButton' }
  | { op: 'changeMedia'; url: string | undefined }
  | { op: 'setLink'; nic: number; up: boolean };

export class FakeDriver implements MachineDriver {
  readonly calls: DriverCall[] = [];
  running = false;
  /** When set, powerOn waits for this before it resolves (to act inside the start-up window). */
  powerOnGate: Promise<void> | null = null;
  /** When set, the next powerOn fails with this message (as QEMU failing to start). */
  failNextPowerOn: string | null = null;
  private listeners: ((r: StopReason) => void)[] = [];

  async powerOn(plan: BootPlan): Promise<void> {
    this.calls.push({ op: 'powerOn', plan: { ...plan } });
    if (this.powerOnGate) await this.powerOnGate;
    const failure = this.failNextPowerOn;
    this.failNextPowerOn = null;
    if (failure) throw new Error(failure);
    this.running = true;
  }

  async powerOff(): Promise<void> {
    this.calls.push({ op: 'powerOff' });
    if (!this.running) return;
    this.running = false;
    this.emit('power-cut');
  }

  async pressPowerButton(): Promise<void> {
    this.calls.push({ op: 'pressPowerButton' });
  }

  onStop(listener: (r: StopReason) => void): void {
    this.listeners.push(listener);
  }

  async setLink(nic: number, up: boolean): Promise<void> {
    this.calls.push({ op: 'setLink', nic, up });
  }

  async changeMedia(url: string | undefined): Promise<void> {
    this.calls.push({ op: 'changeMedia', url });
  }

  /** The machine stops on its own (guest shutdown, reboot, crash). */
  stop(reason: StopReason): void {
    this.running = false;
    this.emit(reason);
  }

  ops(): string[] {
    return this.calls.map((c) => c.op);
  }

  plans(): BootPlan[] {
    return this.calls.flatMap((c) => (c.op === 'powerOn' ? [c.plan] : []));
  }

  private emit(reason: StopReason): void {
    for (const l of this.listeners) l(reason);
  }
}

export class FakeProbe {
  readonly probed: string[] = [];
  /** URLs the probe refuses, as the HTTP probe does for a 404 or a missing Content-Length. */
  readonly unreachable = new Set<string>();
  readonly probe: MediaProbe = async (url) => {
    this.probed.push(url);
    if (this.unreachable.has(url)) throw new MachineError('media-unreachable', `cannot mount ${url}: HEAD answered 404`, 'Image');
  };
}

export const FAST: Partial<MachineTimings> = { powerOnDelayMs: 20, powerCycleOffMs: 20, ejectLagMs: 200, postMs: 200 };

export function makeMachine(quirks: Quirk[] = [], timings: Partial<MachineTimings> = FAST, capabilities: MachineCapabilities = {}) {
  const driver = new FakeDriver();
  const probe = new FakeProbe();
  const log: { event: string; fields?: Record<string, unknown> }[] = [];
  const machine = new Machine(driver, probe.probe, new Set(quirks), { log: (event, fields) => log.push({ event, fields }) }, timings, capabilities);
  return { machine, driver, probe, log };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
