// BMC profiles: a recording of a real BMC's resource tree plus the named behaviours (quirks) that a
// recording cannot show (timing, refusals, how settings apply). One object per vendor; a directory
// holding any recording makes a profile too. What each still does differently from a real BMC of its
// kind: lab/README.md "BMC profiles". What a recording shows by itself (paths, ids,
// AllowableValues, where VirtualMedia sits, which slots have actions, ActionInfo, @Redfish.Settings,
// ETag format) is read from it, not repeated here.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FirmwareError, prefixOf, type Attributes, type HttpBootDevice, type HttpBootReader, type StaticAddress } from '../machine/firmware.js';
import type { Quirk } from '../machine/quirks.js';

export interface BmcProfile {
  name: string;
  /** The recording's directory; absent: the lab's own standard resources. */
  recording?: string;
  /** Behaviours on top of what the recording shows. */
  quirks: Quirk[];
  /** Slot Ids that are another slot under a second name (Dell: the System's "1" is the Manager's "CD"). */
  slotAliases: Record<string, string>;
  /** Slots listed but unusable: GET only (Lenovo's RDOC slots hold files uploaded to the XCC). */
  unusableSlots?: RegExp;
  /** The HTTP boot device the BIOS attributes describe (Dell HttpDev1*, HPE UrlBootFile). */
  httpBoot?: HttpBootReader;
}

// Beside this file in the sources; dist/lab/bmc/profiles/ finds them in the sources too.
const HERE = dirname(fileURLToPath(import.meta.url));
const RECORDINGS = [join(HERE, 'recordings'), resolve(HERE, '../../../../lab/bmc/profiles/recordings')].find((d) => existsSync(d)) ?? join(HERE, 'recordings');

function text(a: Attributes, name: string): string {
  const v = a[name];
  return typeof v === 'string' ? v.trim() : '';
}

/** A static address from dotted fields; "" and 0.0.0.0 count as absent. */
function staticAddress(a: Attributes, names: { address: string; mask: string; gateway: string; dns: string }): StaticAddress {
  const set = (n: string) => (text(a, n) && text(a, n) !== '0.0.0.0' ? text(a, n) : undefined);
  const address = set(names.address);
  const mask = set(names.mask);
  if (!address || !/^\d+\.\d+\.\d+\.\d+$/.test(address)) throw new FirmwareError(`${names.address} must be an IPv4 address when DHCP is off`, names.address);
  if (!mask) throw new FirmwareError(`${names.mask} must be set when DHCP is off`, names.mask);
  let prefixLength: number;
  try {
    prefixLength = prefixOf(mask);
  } catch (err) {
    throw new FirmwareError(`${names.mask}: ${(err as Error).message}`, names.mask);
  }
  const result: StaticAddress = { address, prefixLength };
  const gateway = set(names.gateway);
  const dns = set(names.dns);
  if (gateway) result.gateway = gateway;
  if (dns) result.dns = [dns];
  return result;
}

/** iDRAC: HTTP device 1 (HttpDev1EnDis, HttpDev1Uri), with a static address when HttpDev1DhcpEnDis is Disabled. */
const dellHttpBoot: HttpBootReader = (a) => {
  if (text(a, 'HttpDev1EnDis') !== 'Enabled' || !text(a, 'HttpDev1Uri')) return null;
  const device: HttpBootDevice = { uri: text(a, 'HttpDev1Uri') };
  if (text(a, 'HttpDev1DhcpEnDis') === 'Disabled') {
    device.address = staticAddress(a, { address: 'HttpDev1Ip', mask: 'HttpDev1Mask', gateway: 'HttpDev1Gateway', dns: 'HttpDev1Dns1' });
  }
  return device;
};

/** iLO: UrlBootFile, with a static address when Dhcpv4 is Disabled. */
const hpeHttpBoot: HttpBootReader = (a) => {
  if (!text(a, 'UrlBootFile')) return null;
  const device: HttpBootDevice = { uri: text(a, 'UrlBootFile') };
  if (text(a, 'Dhcpv4') === 'Disabled') {
    device.address = staticAddress(a, { address: 'Ipv4Address', mask: 'Ipv4SubnetMask', gateway: 'Ipv4Gateway', dns: 'Ipv4PrimaryDNS' });
  }
  return device;
};

export const PROFILES: Record<string, BmcProfile> = {
  standard: {
    name: 'standard',
    quirks: [],
    slotAliases: {},
  },
  dell: {
    name: 'dell',
    recording: join(RECORDINGS, 'dell'),
    quirks: ['eject-lag', 'on-refused-after-off', 'iso-only', 'bios-job-required'],
    slotAliases: { '1': 'CD' },
    httpBoot: dellHttpBoot,
  },
  hpe: {
    name: 'hpe',
    recording: join(RECORDINGS, 'hpe'),
    quirks: ['post-lock', 'reset-too-soon', 'if-match-required'],
    slotAliases: {},
    httpBoot: hpeHttpBoot,
  },
  lenovo: {
    name: 'lenovo',
    recording: join(RECORDINGS, 'lenovo'),
    quirks: [],
    slotAliases: {},
    unusableSlots: /^RDOC/i,
  },
};

/** A profile by name, or a directory holding a recording (a new vendor: a directory plus its quirks). */
export function profileOf(nameOrDir: string, extraQuirks: Quirk[] = []): BmcProfile {
  const known = PROFILES[nameOrDir];
  const base: BmcProfile = known
    ? known
    : existsSync(join(nameOrDir, 'redfish', 'v1', 'index.json'))
      ? { name: nameOrDir, recording: resolve(nameOrDir), quirks: [], slotAliases: {} }
      : (() => {
          throw new Error(`BMC profile "${nameOrDir}": not one of ${Object.keys(PROFILES).join(', ')}, nor a directory with redfish/v1/index.json`);
        })();
  return { ...base, quirks: [...new Set([...base.quirks, ...extraQuirks])] };
}
