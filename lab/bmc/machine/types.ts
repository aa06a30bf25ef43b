// The vocabulary of a virtual server as its BMC sees it: Redfish enum values, the boot plan handed to
// a driver at each power-on, and the driver seam (sushy-tools' abstract driver, reduced to what a
// power button, a reset line and a firmware boot choice need).
import type { StaticAddress } from './firmware.js';
import type { SecureBootPlan } from './secure-boot.js';

export const POWER_STATES = ['On', 'Off', 'PoweringOn', 'PoweringOff'] as const;
export type PowerState = (typeof POWER_STATES)[number];

// UsbCd: Supermicro's name for its virtual CD (usbcd-only).
export const BOOT_TARGETS = ['None', 'Cd', 'UsbCd', 'Hdd', 'UefiHttp'] as const;
export type BootTarget = (typeof BOOT_TARGETS)[number];

export const OVERRIDE_ENABLED = ['Disabled', 'Once', 'Continuous'] as const;
export type OverrideEnabled = (typeof OVERRIDE_ENABLED)[number];

// Legacy only where a quirk needs it (it boots nothing: the lab's firmware is UEFI only).
export const OVERRIDE_MODES = ['UEFI', 'Legacy'] as const;
export type OverrideMode = (typeof OVERRIDE_MODES)[number];

export const RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'PowerCycle'] as const;
export type ResetType = (typeof RESET_TYPES)[number];

/** What the firmware is told to boot at one power-on. */
export interface BootPlan {
  /** 'default': the firmware's own order (first disk, then the CD if one is inserted, then network). */
  device: 'default' | 'cd' | 'hdd' | 'http';
  /** The inserted image, attached as the CD whatever the device (a CD is visible to the OS too). */
  mediaUrl?: string;
  /** Only with device 'http': the URI the firmware fetches. */
  httpBootUri?: string;
  /** Only with device 'http': the firmware's static address (absent: DHCP). */
  httpBootAddress?: StaticAddress;
  /** A Secure Boot firmware: its switch and keys for this boot (written to NVRAM before it starts). */
  secureBoot?: SecureBootPlan;
}

/** Why a running machine stopped, as the driver saw it. */
export type StopReason =
  | 'guest-shutdown' // the OS powered the machine off (e.g. after the power button)
  | 'guest-reset' // the OS rebooted: a BMC powers it straight back on
  | 'power-cut' // the BMC cut power (ForceOff and friends)
  | 'crash'; // the emulator died on its own

export interface MachineDriver {
  /** Starts the machine with this boot plan; resolves once it runs. */
  powerOn(plan: BootPlan): Promise<void>;
  /** Cuts power; resolves once the machine has stopped. A no-op when it is not running. */
  powerOff(): Promise<void>;
  /** A short press of the ACPI power button: the OS decides what happens. */
  pressPowerButton(): Promise<void>;
  /** Called once per run when the machine stops, for whatever reason. */
  onStop(listener: (reason: StopReason) => void): void;
  /** Inserts or ejects the CD of a running machine (the OS sees the tray change). */
  changeMedia(url: string | undefined): Promise<void>;
  /** Pulls (`up` false) or plugs a running machine's cable on NIC `nic` (0 = the first); lasts until
   *  the next power-on. The lab's side of the machine, not a BMC function. */
  setLink(nic: number, up: boolean): Promise<void>;
}
