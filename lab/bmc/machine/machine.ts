// One virtual server as its BMC models it: the power state machine, the boot override (pending until a
// power-on consumes a `Once`), the HttpBootUri, the CD slot and the quirk profile. Pure: everything
// that touches QEMU goes through the MachineDriver seam, so this is unit-testable with a fake driver.
import type { BootPlan, BootTarget, MachineDriver, OverrideEnabled, OverrideMode, PowerState, ResetType, StopReason } from './types.js';
import { BOOT_TARGETS, OVERRIDE_ENABLED, OVERRIDE_MODES, RESET_TYPES } from './types.js';
import { DEFAULT_QUIRK_TIMINGS, type Quirk, type QuirkTimings } from './quirks.js';
import type { FirmwareSetup } from './firmware.js';
import type { SecureBootSetup } from './secure-boot.js';

/** A refusal the Redfish adapter turns into an error body; `kind` picks the status and MessageId. */
export class MachineError extends Error {
  constructor(
    readonly kind: 'conflict' | 'bad-value' | 'in-post' | 'not-supported' | 'media-unreachable' | 'internal' | 'invalid-state',
    message: string,
    readonly property?: string,
  ) {
    super(message);
  }
}

export interface BootOverride {
  target: BootTarget;
  enabled: OverrideEnabled;
  mode: OverrideMode;
  httpBootUri: string | null;
}

export interface MediaSlot {
  image: string | null;
  inserted: boolean;
  writeProtected: boolean;
}

export interface MachineTimings extends QuirkTimings {
  /** PoweringOn lasts this long before the machine starts (a BMC sequences power rails, fans, ...). */
  powerOnDelayMs: number;
  /** PowerCycle keeps power off this long. */
  powerCycleOffMs: number;
}

export const DEFAULT_TIMINGS: MachineTimings = { ...DEFAULT_QUIRK_TIMINGS, powerOnDelayMs: 1_500, powerCycleOffMs: 2_000 };

/** Checks that an image URL is one the BMC can stream (HEAD, Content-Length, Accept-Ranges). */
export type MediaProbe = (url: string) => Promise<void>;

export interface MachineEvents {
  /** A human-readable line for the BMC's log: power transitions, boots, stops. */
  log(event: string, fields?: Record<string, unknown>): void;
}

/** What this server's BMC offers beyond the standard: its reset types, its BIOS setup. */
export interface MachineCapabilities {
  /** The reset types the BMC lists (default: all the model knows). */
  resetTypes?: readonly ResetType[];
  /** BIOS attributes with pending settings, and the HTTP boot device they describe. */
  firmware?: FirmwareSetup;
  /** A firmware with Secure Boot: its switch and db, applied at each power-on. */
  secureBoot?: SecureBootSetup;
}

export class Machine {
  private power: PowerState = 'Off';
  private override: BootOverride = { target: 'None', enabled: 'Disabled', mode: 'UEFI', httpBootUri: null };
  private media: MediaSlot = { image: null, inserted: false, writeProtected: true };
  /** The last image inserted, ejected or not (imagename-after-eject shows it). */
  lastImage: string | null = null;
  /** eject-lag: the image still reported until this time. */
  private ejectedImage: { image: string; until: number } | null = null;
  private postUntil = 0;
  /** When the power last went off, and when the last reset was taken (for the quirks that time them). */
  private offAt = 0;
  private lastResetAt = 0;
  private restartAfterShutdown = false;
  private cutting = false;
  /** Power operations run one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();
  private readonly timings: MachineTimings;
  lastBoot: BootPlan | null = null;
  bootCount = 0;

  constructor(
    private readonly driver: MachineDriver,
    private readonly probe: MediaProbe,
    readonly quirks: ReadonlySet<Quirk>,
    private readonly events: MachineEvents,
    timings: Partial<MachineTimings> = {},
    private readonly capabilities: MachineCapabilities = {},
  ) {
    this.timings = { ...DEFAULT_TIMINGS, ...timings };
    driver.onStop((reason) => this.stopped(reason));
  }

  // --- what the Redfish resources show --------------------------------------------------------

  get powerState(): PowerState {
    return this.power;
  }

  get bootOverride(): Readonly<BootOverride> {
    return this.override;
  }

  get mediaSlot(): Readonly<MediaSlot> {
    if (this.ejectedImage && Date.now() < this.ejectedImage.until) {
      return { image: this.ejectedImage.image, inserted: true, writeProtected: true };
    }
    return this.media;
  }

  get inPost(): boolean {
    return this.power === 'On' && Date.now() < this.postUntil;
  }

  allowedResetTypes(): ResetType[] {
    const offered = this.capabilities.resetTypes ?? RESET_TYPES;
    return RESET_TYPES.filter((t) => offered.includes(t) && !(t === 'PowerCycle' && this.quirks.has('no-power-cycle')));
  }

  get firmware(): FirmwareSetup | undefined {
    return this.capabilities.firmware;
  }

  get secureBoot(): SecureBootSetup | undefined {
    return this.capabilities.secureBoot;
  }

  // --- Redfish actions ------------------------------------------------------------------------

  /** ComputerSystem.Reset: validated now, carried out in the background (power takes time). */
  reset(type: string): void {
    if (!(this.allowedResetTypes() as string[]).includes(type)) {
      throw new MachineError('not-supported', `ResetType "${type}" is not supported; allowed: ${this.allowedResetTypes().join(', ')}`, 'ResetType');
    }
    const on = this.power === 'On' || this.power === 'PoweringOn';
    this.events.log('reset', { type, power: this.power });
    if (this.quirks.has('reset-too-soon') && Date.now() < this.lastResetAt + this.timings.resetGapMs) {
      throw new MachineError('invalid-state', `the last reset was ${Date.now() - this.lastResetAt} ms ago; try again in a few seconds`, 'ResetType');
    }
    if (this.quirks.has('on-refused-after-off') && type === 'On' && this.power === 'Off' && Date.now() < this.offAt + this.timings.onRefusedMs) {
      throw new MachineError('conflict', 'the server is still powering down; try again later');
    }
    this.lastResetAt = Date.now();
    switch (type as ResetType) {
      case 'On':
        if (on) throw new MachineError('conflict', 'the server is already powered on');
        this.power = 'PoweringOn';
        this.enqueue(() => this.start(true));
        return;
      case 'ForceOff':
        if (!on) throw new MachineError('conflict', 'the server is already powered off');
        this.power = 'PoweringOff';
        this.enqueue(() => this.cut());
        return;
      case 'GracefulShutdown':
      case 'GracefulRestart':
        if (this.power !== 'On') throw new MachineError('conflict', `the server is ${this.power}; ${type} needs it On`);
        this.restartAfterShutdown = type === 'GracefulRestart';
        this.enqueue(() => this.driver.pressPowerButton());
        return;
      case 'ForceRestart':
        if (!on) throw new MachineError('conflict', 'the server is powered off; ForceRestart needs it On');
        // Marks the queued cut as the owner of the next stop (see stopped()).
        this.power = 'PoweringOff';
        this.enqueue(async () => {
          await this.cut();
          await this.start(false);
        });
        return;
      case 'PowerCycle':
        // A full power removal and restore; from Off it is simply a power-on.
        if (on) this.power = 'PoweringOff';
        else this.power = 'PoweringOn';
        this.enqueue(async () => {
          if (on) {
            await this.cut();
            this.power = 'PoweringOn';
            await sleep(this.timings.powerCycleOffMs);
          }
          await this.start(true);
        });
        return;
    }
  }

  /** PATCH of Boot: any subset of the override properties; the values are checked before anything changes. */
  setBoot(patch: { target?: string; enabled?: string; mode?: string; httpBootUri?: string | null }): void {
    this.refuseDuringPost();
    if (patch.target !== undefined && !(BOOT_TARGETS as readonly string[]).includes(patch.target)) {
      throw new MachineError('bad-value', `"${patch.target}" is not an allowed value; allowed: ${BOOT_TARGETS.join(', ')}`, 'Boot/BootSourceOverrideTarget');
    }
    if (patch.enabled !== undefined && !(OVERRIDE_ENABLED as readonly string[]).includes(patch.enabled)) {
      throw new MachineError('bad-value', `"${patch.enabled}" is not an allowed value; allowed: ${OVERRIDE_ENABLED.join(', ')}`, 'Boot/BootSourceOverrideEnabled');
    }
    // The lab's firmware boots UEFI only; Legacy exists for usbcd-only, where a BMC falls back to it.
    const modes = this.quirks.has('usbcd-only') ? OVERRIDE_MODES : OVERRIDE_MODES.filter((m) => m === 'UEFI');
    if (patch.mode !== undefined && !(modes as readonly string[]).includes(patch.mode)) {
      throw new MachineError('bad-value', `"${patch.mode}" is not an allowed value; allowed: ${modes.join(', ')}`, 'Boot/BootSourceOverrideMode');
    }
    if (this.quirks.has('no-override-disable') && patch.enabled === 'Disabled') {
      throw new MachineError('internal', 'the boot override cannot be disabled', 'Boot/BootSourceOverrideEnabled');
    }
    // An empty string clears the URI, as null does (what orchestrators send to clear it).
    if (patch.httpBootUri) checkHttpUrl(patch.httpBootUri, 'Boot/HttpBootUri');
    const next = { ...this.override };
    if (patch.target !== undefined) next.target = patch.target as BootTarget;
    if (patch.enabled !== undefined) next.enabled = patch.enabled as OverrideEnabled;
    if (patch.mode !== undefined) next.mode = patch.mode as OverrideMode;
    if (patch.httpBootUri !== undefined) next.httpBootUri = patch.httpBootUri || null;
    // usbcd-only (Supermicro): a target sent without its mode falls back to Legacy.
    if (this.quirks.has('usbcd-only') && patch.target !== undefined && patch.target !== 'None' && patch.mode === undefined) next.mode = 'Legacy';
    // Setting a target without saying how long it lasts means once, as on most BMCs.
    if (patch.target !== undefined && patch.target !== 'None' && patch.enabled === undefined && next.enabled === 'Disabled') next.enabled = 'Once';
    if (next.target === 'None') next.enabled = 'Disabled';
    this.override = next;
    this.events.log('boot override', { ...next });
  }

  /** VirtualMedia.InsertMedia: the BMC checks that it can stream the image before it accepts it. */
  async insertMedia(image: string, inserted = true, writeProtected = true): Promise<void> {
    this.refuseDuringPost();
    checkHttpUrl(image, 'Image');
    if (this.quirks.has('https-only-media') && !image.startsWith('https:')) {
      throw new MachineError('bad-value', `this BMC takes https:// images only, not ${image}`, 'Image');
    }
    if (this.quirks.has('iso-only') && !new URL(image).pathname.toLowerCase().endsWith('.iso')) {
      throw new MachineError('bad-value', `the image URL must end in .iso: ${image}`, 'Image');
    }
    if (!writeProtected) throw new MachineError('bad-value', 'this slot is a read-only CD: WriteProtected must be true', 'WriteProtected');
    if (this.mediaSlot.inserted) {
      throw new MachineError('conflict', `the Cd slot already holds ${this.mediaSlot.image}; eject it first`);
    }
    if (!inserted) {
      // Image set but not connected: remembered, not attached.
      this.media = { image, inserted: false, writeProtected };
      return;
    }
    await this.probe(image);
    // The slot may have been filled while the probe ran.
    if (this.mediaSlot.inserted) throw new MachineError('conflict', `the Cd slot already holds ${this.mediaSlot.image}; eject it first`);
    this.media = { image, inserted: true, writeProtected };
    this.lastImage = image;
    this.events.log('media inserted', { image });
    if (this.power === 'On') await this.driver.changeMedia(image);
  }

  /** VirtualMedia.EjectMedia: empties the slot (an empty slot stays empty). */
  async ejectMedia(): Promise<void> {
    this.refuseDuringPost();
    const image = this.media.inserted ? this.media.image : null;
    this.media = { image: null, inserted: false, writeProtected: true };
    if (image === null) return;
    if (this.quirks.has('eject-lag')) this.ejectedImage = { image, until: Date.now() + this.timings.ejectLagMs };
    this.events.log('media ejected', { image });
    if (this.power === 'On') await this.driver.changeMedia(undefined);
  }

  /** Waits for the power operations queued so far (tests, shutdown). */
  async settled(): Promise<void> {
    await this.chain;
  }

  // --- internals ------------------------------------------------------------------------------

  private refuseDuringPost(): void {
    if (this.quirks.has('post-lock') && this.inPost) {
      throw new MachineError('in-post', 'the server is in POST; try again when POST has finished');
    }
  }

  private enqueue(op: () => Promise<void>): void {
    this.chain = this.chain.then(op).catch((err: unknown) => {
      this.power = 'Off';
      this.events.log('power operation failed', { error: err instanceof Error ? err.message : String(err) });
    });
  }

  /** Plans the boot (consuming a `Once` override) and starts the machine. */
  private async start(withDelay: boolean): Promise<void> {
    this.power = 'PoweringOn';
    if (withDelay) await sleep(this.timings.powerOnDelayMs);
    // The firmware takes its pending settings (a BIOS job) before it chooses what to boot.
    const applied = this.capabilities.firmware?.applyPending() ?? [];
    if (applied.length) this.events.log('bios settings applied', { attributes: applied });
    const plan = this.planBoot();
    this.lastBoot = plan;
    this.bootCount++;
    this.events.log('power on', { ...plan });
    await this.driver.powerOn(plan);
    this.postUntil = Date.now() + this.timings.postMs;
    this.power = 'On';
    // The slot may have changed while the driver started the machine: the plan predates it.
    const media = this.media.inserted && this.media.image ? this.media.image : undefined;
    if (media !== plan.mediaUrl) {
      await this.driver.changeMedia(media).catch((err: unknown) => this.events.log('media change failed', { error: err instanceof Error ? err.message : String(err) }));
    }
  }

  private async cut(): Promise<void> {
    this.power = 'PoweringOff';
    this.cutting = true;
    // A power cut cancels a GracefulRestart the guest never acted on.
    this.restartAfterShutdown = false;
    try {
      await this.driver.powerOff();
    } finally {
      this.cutting = false;
    }
    this.power = 'Off';
    this.offAt = Date.now();
    this.events.log('power off');
  }

  private planBoot(): BootPlan {
    const { target, enabled, mode, httpBootUri } = this.override;
    const mediaUrl = this.media.inserted && this.media.image ? this.media.image : undefined;
    // UefiHttp fetches HttpBootUri where the BMC has it, else the HTTP boot device of the BIOS setup.
    const http = httpBootUri ? { uri: httpBootUri } : this.capabilities.firmware?.httpBootDevice();
    // usbcd-only: the virtual CD is UsbCd; Cd names a drive that is not there.
    const cdTarget = this.quirks.has('usbcd-only') ? 'UsbCd' : 'Cd';
    let device: BootPlan['device'] = 'default';
    if (enabled !== 'Disabled' && mode === 'UEFI') {
      if (target === cdTarget && mediaUrl) device = 'cd';
      else if (target === 'Hdd') device = 'hdd';
      else if (target === 'UefiHttp' && http) device = 'http';
    }
    if (enabled === 'Once') this.override = { ...this.override, target: 'None', enabled: 'Disabled' };
    const plan: BootPlan = { device };
    if (this.capabilities.secureBoot) plan.secureBoot = this.capabilities.secureBoot.forBoot();
    if (mediaUrl) plan.mediaUrl = mediaUrl;
    if (device === 'http' && http) {
      plan.httpBootUri = http.uri;
      if (http.address) plan.httpBootAddress = http.address;
    }
    return plan;
  }

  private stopped(reason: StopReason): void {
    if (this.cutting || reason === 'power-cut') return; // cut() owns this transition
    this.events.log('machine stopped', { reason });
    // A queued cut (ForceOff, ForceRestart, PowerCycle) decides what comes next, not the guest.
    if (this.power === 'PoweringOff') return;
    if (reason === 'guest-reset' || (reason === 'guest-shutdown' && this.restartAfterShutdown)) {
      // A reboot from inside keeps the power on: the BMC starts the next boot, applying pending overrides.
      this.restartAfterShutdown = false;
      this.power = 'PoweringOn';
      this.enqueue(() => this.start(false));
      return;
    }
    this.restartAfterShutdown = false;
    this.power = 'Off';
    this.offAt = Date.now();
  }
}

function checkHttpUrl(value: string, property: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new MachineError('bad-value', `"${value}" is not a URL`, property);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MachineError('bad-value', `only http and https URLs are supported, not ${url.protocol}`, property);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
