// IP address normalization and CIDR membership for the access-control list.
// Families never mix: an IPv4 network matches only IPv4 clients (after unwrapping IPv4-mapped IPv6),
// an IPv6 network only IPv6 ones. ip-cidr validates the syntax; the comparison is ours because
// ip-cidr's own `contains` compares across families.
import net from 'node:net';
import IPCIDR from 'ip-cidr';

export interface Cidr {
  text: string;
  family: 4 | 6;
  first: bigint;
  last: bigint;
}

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** Returns the canonical form of a client address: IPv4-mapped IPv6 becomes plain IPv4, zone ids are dropped. */
export function normalizeAddress(address: string): string {
  const noZone = address.replace(/%.*$/, '');
  const mapped = MAPPED_V4.exec(noZone);
  return mapped ? (mapped[1] as string) : noZone.toLowerCase();
}

function v4ToBigInt(a: string): bigint {
  return a.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function v6ToBigInt(a: string): bigint {
  // Expand an embedded dotted quad ("::ffff:1.2.3.4") into two hextets first.
  let text = a;
  const dotted = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (dotted) {
    const v = v4ToBigInt(dotted[1] as string);
    text = text.slice(0, dotted.index) + `${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - headParts.length - tailParts.length).fill('0');
  return [...headParts, ...fill, ...tailParts].reduce((acc, h) => (acc << 16n) | BigInt(parseInt(h, 16)), 0n);
}

/** Numeric value and family of an address; null when it is not an IP literal. */
export function addressValue(address: string): { family: 4 | 6; value: bigint } | null {
  const a = normalizeAddress(address);
  const family = net.isIP(a);
  if (family === 4) return { family: 4, value: v4ToBigInt(a) };
  if (family === 6) return { family: 6, value: v6ToBigInt(a) };
  return null;
}

export function parseCidr(text: string): Cidr {
  const trimmed = text.trim();
  const slash = trimmed.indexOf('/');
  const addr = slash < 0 ? trimmed : trimmed.slice(0, slash);
  const family = net.isIP(addr);
  // A bare address means a single host.
  const withPrefix = slash < 0 ? `${addr}/${family === 6 ? 128 : 32}` : trimmed;
  const prefixText = withPrefix.slice(withPrefix.indexOf('/') + 1);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText) || !IPCIDR.isValidCIDR(withPrefix)) {
    throw new Error(`"${text}" is not a valid CIDR`);
  }
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(prefixText);
  if (prefix > bits) throw new Error(`"${text}": prefix longer than ${bits} bits`);
  // The literal's own value: addressValue() would already have unwrapped a mapped address.
  const value = family === 4 ? v4ToBigInt(addr) : v6ToBigInt(addr.replace(/%.*$/, '').toLowerCase());
  if (family === 6 && value >> 32n === 0xffffn) {
    // ::ffff:a.b.c.d/N (or its hex spelling) names IPv4 clients, which are normalized to plain IPv4:
    // keep the network in that family.
    if (prefix < 96) throw new Error(`"${text}": an IPv4-mapped network needs a prefix of at least 96`);
    const v4 = value & 0xffffffffn;
    const dotted = [24n, 16n, 8n, 0n].map((shift) => String((v4 >> shift) & 0xffn)).join('.');
    return { ...parseCidr(`${dotted}/${prefix - 96}`), text: withPrefix };
  }
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) {
    throw new Error(`"${text}" has host bits set (network address expected)`);
  }
  return { text: withPrefix, family: family as 4 | 6, first: value, last: value | hostMask };
}

export function parseCidrList(raw: string): Cidr[] {
  const items = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  return items.map(parseCidr);
}

export function isAddressIn(address: string, cidrs: readonly Cidr[]): boolean {
  const a = addressValue(address);
  if (!a) return false;
  return cidrs.some((c) => c.family === a.family && a.value >= c.first && a.value <= c.last);
}
