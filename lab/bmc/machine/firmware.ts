// The server's firmware setup as a BMC sees it: BIOS attributes with a pending set that the firmware
// takes at the next power-on (DSP0266 "settings resource" semantics), and the HTTP boot device those
// attributes describe. Attribute names belong to the vendor profile, not to this model.

export type AttributeValue = string | number | boolean | null;
export type Attributes = Record<string, AttributeValue>;

/** A static IPv4 address for the firmware's network stack (no DHCP). */
export interface StaticAddress {
  address: string;
  prefixLength: number;
  gateway?: string;
  dns?: string[];
}

/** Where the firmware's UEFI HTTP boot fetches from, and with which address. */
export interface HttpBootDevice {
  uri: string;
  /** absent: DHCP */
  address?: StaticAddress;
}

/** A vendor's reading of its BIOS attributes: the HTTP boot device they configure, or null. */
export type HttpBootReader = (attributes: Readonly<Attributes>) => HttpBootDevice | null;

export class FirmwareSetup {
  private current: Attributes;
  private pending: Attributes = {};
  /** Whether the pending set is committed to the next reset (a BIOS job, or an apply time). */
  private committed = false;

  constructor(
    attributes: Attributes,
    private readonly readHttpBoot: HttpBootReader,
    /** Dell: settings apply at reset only when committed (a configuration job); others: always. */
    private readonly needsCommit = false,
  ) {
    this.current = { ...attributes };
  }

  get attributes(): Readonly<Attributes> {
    return this.current;
  }

  get pendingAttributes(): Readonly<Attributes> {
    return this.pending;
  }

  /** Checks names and value types against the current set, then adds them to the pending set. */
  stage(changes: Attributes, commit: boolean): void {
    for (const [name, value] of Object.entries(changes)) {
      if (!Object.hasOwn(this.current, name)) throw new FirmwareError(`no BIOS attribute named ${name}`, name);
      const want = this.current[name] === null ? typeof value : typeof this.current[name];
      if (value !== null && typeof value !== want) throw new FirmwareError(`${name} takes a ${want}, not ${JSON.stringify(value)}`, name);
    }
    // The HTTP boot device they would make must make sense (a static address needs its mask...): the
    // firmware would otherwise fail at the next boot, far from the change that broke it.
    this.readHttpBoot({ ...this.current, ...this.pending, ...changes });
    this.pending = { ...this.pending, ...changes };
    this.committed ||= commit || !this.needsCommit;
  }

  /** At power-on: a committed pending set becomes current; returns the names applied. */
  applyPending(): string[] {
    if (!this.committed) return [];
    const names = Object.keys(this.pending);
    this.current = { ...this.current, ...this.pending };
    this.pending = {};
    this.committed = false;
    return names;
  }

  httpBootDevice(): HttpBootDevice | null {
    return this.readHttpBoot(this.current);
  }
}

export class FirmwareError extends Error {
  constructor(
    message: string,
    readonly attribute: string,
  ) {
    super(message);
  }
}

/** A prefix length from a dotted mask (255.255.255.0 → 24); throws on a mask with holes. */
export function prefixOf(mask: string): number {
  const parts = mask.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`"${mask}" is not a dotted IPv4 mask`);
  const bits = parts.map((p) => p.toString(2).padStart(8, '0')).join('');
  if (!/^1*0*$/.test(bits)) throw new Error(`"${mask}" is not a contiguous mask`);
  return bits.indexOf('0') === -1 ? 32 : bits.indexOf('0');
}
