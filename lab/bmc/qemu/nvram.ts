// Edits a VM's private copy of OVMF's variable store (OVMF_VARS_4M.fd) the way a BMC stores a
// Redfish `HttpBootUri` in the BIOS: a Boot#### load option with a URI device path plus BootNext.
//
// API
//   setHttpBootNext(varsFile, { uri, mac?, pciDevice?, pciFunction?, description?, optionNumber? })
//       writes Boot<optionNumber> (default Boot0100) and BootNext = optionNumber, replacing earlier
//       copies. With mac + pciDevice the device path is PciRoot(0)/Pci(dev,fn)/MAC(mac,1)/IPv4(DHCP)/
//       Uri(uri); without them it is Uri(uri) alone (the firmware then tries every NIC). With
//       staticIpv4 (only together with mac + pciDevice) the IPv4 node carries StaticIpAddress=TRUE and
//       the address, mask and gateway. NOTE: OVMF/edk2's HttpBootDxe ignores that node's contents and
//       always runs DHCP (see lab/README.md, "Static address in the HTTP boot entry").
//   clearBootNext(varsFile, { optionNumber? })   deletes BootNext and Boot<optionNumber>.
//   readVariables(varsFile)                      the live variables, in store order.
//   storeUsage(varsFile)                         sizes of the variable area (live, deleted, free).
//   buildHttpBootLoadOption(opts), formatGuid, EFI_GLOBAL_VARIABLE   building blocks, for tests.
//
// Only the variable area is touched: the firmware volume header, its checksum and the variable
// store header stay byte-identical. The file is read whole and replaced atomically (tmp + rename).

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** gEfiGlobalVariableGuid: Boot####, BootNext, BootOrder live under it (UEFI spec "Globally Defined Variables"). */
export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** gEfiAuthenticatedVariableGuid: the store header GUID of an authenticated-variable store (OVMF's format). */
const AUTHENTICATED_VARIABLE_STORE = 'aaf32c78-947b-439a-a180-2e144ec37792';
/** gEfiVariableGuid: the older, non-authenticated format (a different header layout; not supported). */
const PLAIN_VARIABLE_STORE = 'ddcf3616-3275-4164-98b6-fe85707ffe7d';

// edk2 MdeModulePkg/Include/Guid/VariableFormat.h
const VARIABLE_DATA = 0x55aa; // StartId
const VARIABLE_STORE_FORMATTED = 0x5a;
const VARIABLE_STORE_HEALTHY = 0xfe;
const VARIABLE_STORE_HEADER_SIZE = 28; // Signature(16) Size(4) Format(1) State(1) Reserved(2) Reserved1(4)
const AUTH_HEADER_SIZE = 60; // AUTHENTICATED_VARIABLE_HEADER
const HEADER_ALIGNMENT = 4; // each header starts 4-byte aligned; name and data are unpadded on x64
const VAR_ADDED = 0x3f;
const VAR_IN_DELETED_TRANSITION_AND_ADDED = 0x3e;
const VAR_DELETED_STATE = 0x3c; // VAR_ADDED & VAR_IN_DELETED_TRANSITION & VAR_DELETED: bits only ever clear, as on flash

const EFI_VARIABLE_NON_VOLATILE = 0x1;
const EFI_VARIABLE_BOOTSERVICE_ACCESS = 0x2;
const EFI_VARIABLE_RUNTIME_ACCESS = 0x4;
const NV_BS_RT = EFI_VARIABLE_NON_VOLATILE | EFI_VARIABLE_BOOTSERVICE_ACCESS | EFI_VARIABLE_RUNTIME_ACCESS;
const LOAD_OPTION_ACTIVE = 0x1;

/** OVMF's PcdMaxVariableSize (header + name + data) without TLS is 0x2000; stay below it. */
const MAX_VARIABLE_SIZE = 0x2000;
/** Longer than any URL a BMC accepts; keeps the load option well inside MAX_VARIABLE_SIZE. */
export const MAX_URI_LENGTH = 2048;
export const MAX_DESCRIPTION_LENGTH = 128;
const DEFAULT_OPTION_NUMBER = 0x0100;
const DEFAULT_DESCRIPTION = 'UEFI HTTP Boot';

export interface HttpBootOptions {
  /** http:// or https:// URL the firmware fetches (printable ASCII, at most MAX_URI_LENGTH). */
  uri: string;
  /** NIC MAC (aa:bb:cc:dd:ee:ff or aa-bb-...); together with pciDevice pins the boot to that NIC. */
  mac?: string;
  /** PCI device number of the NIC on bus 0 (0..31), e.g. 3 for QEMU `addr=0x3`. */
  pciDevice?: number;
  /** PCI function number (0..7), default 0. */
  pciFunction?: number;
  /** Boot menu text, default "UEFI HTTP Boot". */
  description?: string;
  /** The #### of Boot####, default 0x0100. */
  optionNumber?: number;
  /**
   * A static address for the IPv4 device path node (StaticIpAddress TRUE) instead of an all-zero
   * "use DHCP" node; only together with mac + pciDevice. The node is spec-conformant, but edk2's
   * HttpBootDxe (OVMF) does not read it and still needs a DHCP server: see lab/README.md.
   */
  staticIpv4?: StaticIpv4;
}

export interface StaticIpv4 {
  /** The NIC's own address, dotted quad (e.g. 192.0.2.50). */
  address: string;
  /** Subnet prefix length 1..32 (24 for 255.255.255.0). */
  prefixLength: number;
  /** Default gateway, dotted quad inside address/prefixLength; 0.0.0.0 in the node when absent. */
  gateway?: string;
}

export interface EfiVariable {
  name: string;
  guid: string;
  attributes: number;
  data: Buffer;
  /** File offset of the variable's header. */
  offset: number;
}

export interface StoreUsage {
  /** Bytes available for variables (the store minus its own header). */
  capacity: number;
  live: number;
  /** Bytes held by deleted or half-written variables: what a compaction gives back. */
  reclaimable: number;
  free: number;
}

interface Entry {
  offset: number;
  /** Header + name + data, before alignment. */
  size: number;
  state: number;
  name: string;
  guid: string;
  attributes: number;
  nameSize: number;
  dataSize: number;
}

interface Store {
  file: string;
  buf: Buffer;
  /** Offset of the first variable header. */
  start: number;
  /** End of the variable area (store header offset + store Size). */
  end: number;
  entries: Entry[];
  /** Where the next variable header goes. */
  freeOffset: number;
}

interface NewVariable {
  name: string;
  guid: string;
  attributes: number;
  data: Buffer;
}

export async function setHttpBootNext(varsFile: string, opts: HttpBootOptions): Promise<void> {
  const optionNumber = checkOptionNumber(opts.optionNumber);
  const loadOption = buildHttpBootLoadOption(opts);
  const store = parseStore(varsFile, await readFile(varsFile));
  const bootNext = Buffer.alloc(2);
  bootNext.writeUInt16LE(optionNumber);
  const names = [bootOptionName(optionNumber), 'BootNext'];
  const updated = update(store, liveEntries(store, names), [
    { name: names[0]!, guid: EFI_GLOBAL_VARIABLE, attributes: NV_BS_RT, data: loadOption },
    { name: 'BootNext', guid: EFI_GLOBAL_VARIABLE, attributes: NV_BS_RT, data: bootNext },
  ]);
  await writeAtomically(varsFile, updated);
}

export async function clearBootNext(varsFile: string, opts: { optionNumber?: number } = {}): Promise<void> {
  const optionNumber = checkOptionNumber(opts.optionNumber);
  const store = parseStore(varsFile, await readFile(varsFile));
  const doomed = liveEntries(store, [bootOptionName(optionNumber), 'BootNext']);
  if (doomed.length === 0) return;
  await writeAtomically(varsFile, update(store, doomed, []));
}

/** Writes these variables (replacing any live one of the same name and GUID) in one update. */
export async function setVariables(varsFile: string, variables: { name: string; guid: string; attributes: number; data: Buffer }[]): Promise<void> {
  const store = parseStore(varsFile, await readFile(varsFile));
  const doomed = liveOf(store).filter((e) => variables.some((v) => v.name === e.name && v.guid === e.guid.toLowerCase()));
  await writeAtomically(varsFile, update(store, doomed, variables));
}

export async function readVariables(varsFile: string): Promise<EfiVariable[]> {
  const store = parseStore(varsFile, await readFile(varsFile));
  return liveOf(store).map((e) => ({
    name: e.name,
    guid: e.guid,
    attributes: e.attributes,
    data: Buffer.from(store.buf.subarray(dataOffset(e), dataOffset(e) + e.dataSize)),
    offset: e.offset,
  }));
}

export async function storeUsage(varsFile: string): Promise<StoreUsage> {
  const store = parseStore(varsFile, await readFile(varsFile));
  const live = liveOf(store).reduce((n, e) => n + align(e.size), 0);
  const used = store.freeOffset - store.start;
  return { capacity: store.end - store.start, live, reclaimable: used - live, free: store.end - store.freeOffset };
}

/**
 * EFI_LOAD_OPTION (UEFI spec "Load Options"): Attributes u32, FilePathListLength u16, Description
 * (UTF-16LE, NUL-terminated), FilePathList, no OptionalData.
 */
export function buildHttpBootLoadOption(opts: HttpBootOptions): Buffer {
  const uri = checkUri(opts.uri);
  const description = checkDescription(opts.description ?? DEFAULT_DESCRIPTION);
  const nodes: Buffer[] = [];
  const staticIpv4 = opts.staticIpv4 === undefined ? undefined : checkStaticIpv4(opts.staticIpv4);
  if (staticIpv4 && (opts.mac === undefined || opts.pciDevice === undefined)) {
    throw new Error('staticIpv4 needs mac and pciDevice: the IPv4 node only exists in a PciRoot/Pci/MAC/IPv4/Uri path');
  }
  if (opts.mac !== undefined || opts.pciDevice !== undefined || opts.pciFunction !== undefined) {
    // A MAC-only or PCI-less path is "Not Found" to OVMF's HTTP boot: the NIC is matched by the
    // full PciRoot/Pci/MAC prefix, and the IPv4 node is what selects IPv4 + DHCP.
    if (opts.mac === undefined || opts.pciDevice === undefined) {
      throw new Error('mac and pciDevice must be given together (or neither, for a Uri()-only device path)');
    }
    nodes.push(pciRootNode(), pciNode(checkPciDevice(opts.pciDevice), checkPciFunction(opts.pciFunction ?? 0)));
    nodes.push(macNode(parseMac(opts.mac)), staticIpv4 ? ipv4StaticNode(staticIpv4, uriHostIpv4(uri)) : ipv4DhcpNode());
  }
  nodes.push(uriNode(uri), endNode());
  const filePath = Buffer.concat(nodes);
  const head = Buffer.alloc(6);
  head.writeUInt32LE(LOAD_OPTION_ACTIVE, 0);
  head.writeUInt16LE(filePath.length, 4);
  return Buffer.concat([head, Buffer.from(`${description}\0`, 'utf16le'), filePath]);
}

// --- device path nodes (UEFI spec "Device Path Protocol": Type, SubType, Length u16) ---

function node(type: number, subType: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt8(subType, 1);
  h.writeUInt16LE(4 + body.length, 2);
  return Buffer.concat([h, body]);
}

/** ACPI_HID_DEVICE_PATH PciRoot(0x0): _HID EISA PNP0A03 (OVMF reports it on q35 too), _UID 0. */
function pciRootNode(): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32LE(0x0a0341d0, 0);
  return node(0x02, 0x01, body);
}

/** PCI_DEVICE_PATH: Function comes before Device in the structure. */
function pciNode(device: number, fn: number): Buffer {
  return node(0x01, 0x01, Buffer.from([fn, device]));
}

/** MAC_ADDR_DEVICE_PATH: 32-byte address field, IfType 1 (Ethernet, RFC 1700). */
function macNode(mac: Buffer): Buffer {
  const body = Buffer.alloc(33);
  mac.copy(body, 0);
  body.writeUInt8(1, 32);
  return node(0x03, 0x0b, body);
}

/** IPv4_DEVICE_PATH all zero: StaticIpAddress FALSE, i.e. take the address from DHCP. */
function ipv4DhcpNode(): Buffer {
  return node(0x03, 0x0c, Buffer.alloc(23));
}

interface CheckedStaticIpv4 {
  address: Buffer;
  mask: Buffer;
  gateway: Buffer;
}

/**
 * IPv4_DEVICE_PATH (UEFI spec "IPv4 Device Path", 27 bytes): LocalIpAddress[4], RemoteIpAddress[4],
 * LocalPort u16, RemotePort u16, Protocol u16, StaticIpAddress u8, GatewayIpAddress[4], SubnetMask[4].
 * Ports 0, Protocol 6 (TCP, what HTTP runs on), RemoteIp the URI's host when it is an IPv4 literal.
 */
function ipv4StaticNode(ip: CheckedStaticIpv4, remote: Buffer): Buffer {
  const body = Buffer.alloc(23);
  ip.address.copy(body, 0);
  remote.copy(body, 4);
  body.writeUInt16LE(0, 8); // LocalPort
  body.writeUInt16LE(0, 10); // RemotePort
  body.writeUInt16LE(6, 12); // Protocol: TCP
  body.writeUInt8(1, 14); // StaticIpAddress: TRUE
  ip.gateway.copy(body, 15);
  ip.mask.copy(body, 19);
  return node(0x03, 0x0c, body);
}

/** URI_DEVICE_PATH: the URI in ASCII, no NUL (its length is the node's). */
function uriNode(uri: string): Buffer {
  return node(0x03, 0x18, Buffer.from(uri, 'latin1'));
}

function endNode(): Buffer {
  return node(0x7f, 0xff, Buffer.alloc(0));
}

// --- input checks ---

function checkUri(uri: unknown): string {
  if (typeof uri !== 'string' || uri.length === 0) throw new Error('uri is required');
  if (!/^https?:\/\//i.test(uri)) throw new Error(`uri must start with http:// or https://: ${JSON.stringify(uri)}`);
  // The node holds raw ASCII and the firmware's HTTP client sends it as-is: no spaces or controls.
  if (!/^[\x21-\x7e]+$/.test(uri)) {
    throw new Error('uri must be printable ASCII without spaces (percent-encode anything else)');
  }
  if (uri.length > MAX_URI_LENGTH) throw new Error(`uri is ${uri.length} characters; the limit is ${MAX_URI_LENGTH}`);
  let host: string;
  try {
    host = new URL(uri).hostname;
  } catch {
    throw new Error(`uri is not a valid URL: ${uri}`);
  }
  if (host === '') throw new Error(`uri has no host: ${uri}`);
  return uri;
}

function checkDescription(description: unknown): string {
  if (typeof description !== 'string' || description.length === 0) throw new Error('description must be a non-empty string');
  if (description.length > MAX_DESCRIPTION_LENGTH) {
    throw new Error(`description is ${description.length} characters; the limit is ${MAX_DESCRIPTION_LENGTH}`);
  }
  // UTF-16 with a NUL terminator: a NUL inside would cut it, a lone surrogate cannot round-trip.
  if (/[\0-\x1f\x7f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(description)) {
    throw new Error('description must not contain control characters or unpaired surrogates');
  }
  return description;
}

function parseMac(mac: unknown): Buffer {
  if (typeof mac !== 'string' || !/^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i.test(mac)) {
    throw new Error(`mac must look like 52:54:00:12:34:56: ${JSON.stringify(mac)}`);
  }
  return Buffer.from(mac.replace(/[:-]/g, ''), 'hex');
}

function parseIpv4(field: string, value: unknown): Buffer {
  const m = typeof value === 'string' ? /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(value) : null;
  const octets = m ? m.slice(1).map(Number) : [];
  if (!m || octets.some((o, i) => o > 255 || (m[i + 1]!.length > 1 && m[i + 1]!.startsWith('0')))) {
    throw new Error(`${field} must be a dotted-quad IPv4 address like 192.0.2.50: ${JSON.stringify(value)}`);
  }
  return Buffer.from(octets);
}

function checkStaticIpv4(ip: unknown): CheckedStaticIpv4 {
  if (typeof ip !== 'object' || ip === null) throw new Error('staticIpv4 must be an object { address, prefixLength, gateway? }');
  const { address, prefixLength, gateway } = ip as Record<string, unknown>;
  const addr = parseIpv4('staticIpv4.address', address);
  if (!Number.isInteger(prefixLength) || (prefixLength as number) < 1 || (prefixLength as number) > 32) {
    throw new Error(`staticIpv4.prefixLength must be an integer 1..32: ${String(prefixLength)}`);
  }
  const bits = prefixLength as number;
  const maskN = bits === 32 ? 0xffffffff : ~(0xffffffff >>> bits) >>> 0;
  const mask = Buffer.alloc(4);
  mask.writeUInt32BE(maskN);
  const addrN = addr.readUInt32BE(0);
  if (addrN === 0 || addr[0]! >= 224 || addr[0] === 127) {
    throw new Error(`staticIpv4.address must be a unicast host address: ${String(address)}`);
  }
  if (bits <= 30 && ((addrN & ~maskN) >>> 0 === 0 || (addrN | ~maskN) >>> 0 === 0xffffffff)) {
    throw new Error(`staticIpv4.address ${String(address)} is the network or broadcast address of /${bits}`);
  }
  let gw: Buffer = Buffer.alloc(4);
  if (gateway !== undefined) {
    gw = parseIpv4('staticIpv4.gateway', gateway);
    const gwN = gw.readUInt32BE(0);
    if (((gwN ^ addrN) & maskN) >>> 0 !== 0) {
      throw new Error(`staticIpv4.gateway ${String(gateway)} is not inside ${String(address)}/${bits}`);
    }
    if (gwN === addrN) throw new Error(`staticIpv4.gateway must differ from staticIpv4.address: ${String(gateway)}`);
  }
  return { address: addr, mask, gateway: gw };
}

/** The URI's host as 4 bytes when it is an IPv4 literal, else 0.0.0.0 (a name is resolved later, by DNS). */
function uriHostIpv4(uri: string): Buffer {
  const host = new URL(uri).hostname;
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) ? parseIpv4('uri host', host) : Buffer.alloc(4);
}

function checkPciDevice(device: unknown): number {
  if (!Number.isInteger(device) || (device as number) < 0 || (device as number) > 31) {
    throw new Error(`pciDevice must be an integer 0..31: ${String(device)}`);
  }
  return device as number;
}

function checkPciFunction(fn: unknown): number {
  if (!Number.isInteger(fn) || (fn as number) < 0 || (fn as number) > 7) {
    throw new Error(`pciFunction must be an integer 0..7: ${String(fn)}`);
  }
  return fn as number;
}

function checkOptionNumber(n: unknown): number {
  if (n === undefined) return DEFAULT_OPTION_NUMBER;
  if (!Number.isInteger(n) || (n as number) < 0 || (n as number) > 0xffff) {
    throw new Error(`optionNumber must be an integer 0..0xFFFF: ${String(n)}`);
  }
  return n as number;
}

/** Boot#### with four upper-case hex digits, as the UEFI spec requires. */
function bootOptionName(n: number): string {
  return `Boot${n.toString(16).toUpperCase().padStart(4, '0')}`;
}

// --- the variable store ---

/** EFI_GUID in memory: u32, u16, u16 little-endian, then 8 bytes as they are. */
export function formatGuid(b: Buffer, at = 0): string {
  const hex = (s: number, e: number) => b.subarray(at + s, at + e).toString('hex');
  return [
    b.readUInt32LE(at).toString(16).padStart(8, '0'),
    b.readUInt16LE(at + 4).toString(16).padStart(4, '0'),
    b.readUInt16LE(at + 6).toString(16).padStart(4, '0'),
    hex(8, 10),
    hex(10, 16),
  ].join('-');
}

function guidBytes(guid: string): Buffer {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(guid);
  if (!m) throw new Error(`bad GUID ${guid}`);
  const b = Buffer.alloc(16);
  b.writeUInt32LE(parseInt(m[1]!, 16), 0);
  b.writeUInt16LE(parseInt(m[2]!, 16), 4);
  b.writeUInt16LE(parseInt(m[3]!, 16), 6);
  Buffer.from(m[4]! + m[5]!, 'hex').copy(b, 8);
  return b;
}

const align = (n: number) => (n + HEADER_ALIGNMENT - 1) & ~(HEADER_ALIGNMENT - 1);
const dataOffset = (e: Entry) => e.offset + AUTH_HEADER_SIZE + e.nameSize;

/**
 * The file is an EFI_FIRMWARE_VOLUME_HEADER (signature "_FVH" at 0x28, HeaderLength at 0x30) followed
 * by a VARIABLE_STORE_HEADER; variables run from there until the first header without StartId 0x55AA.
 */
function parseStore(file: string, buf: Buffer): Store {
  const notAStore = (why: string) =>
    new Error(`${file} is not an OVMF authenticated-variable store (${why}); expected a copy of OVMF_VARS*.fd`);
  if (buf.length < 0x48 + VARIABLE_STORE_HEADER_SIZE) throw notAStore(`only ${buf.length} bytes`);
  if (buf.toString('latin1', 0x28, 0x2c) !== '_FVH') throw notAStore('no firmware volume signature _FVH');
  const storeHeader = buf.readUInt16LE(0x30);
  if (storeHeader < 0x48 || storeHeader + VARIABLE_STORE_HEADER_SIZE > buf.length) throw notAStore('bad FV header length');
  const signature = formatGuid(buf, storeHeader);
  if (signature === PLAIN_VARIABLE_STORE) throw notAStore('it is a non-authenticated variable store');
  if (signature !== AUTHENTICATED_VARIABLE_STORE) throw notAStore(`store signature ${signature}`);
  const size = buf.readUInt32LE(storeHeader + 16);
  if (buf[storeHeader + 20] !== VARIABLE_STORE_FORMATTED || buf[storeHeader + 21] !== VARIABLE_STORE_HEALTHY) {
    throw notAStore('store header is not formatted and healthy');
  }
  const end = storeHeader + size;
  if (size < VARIABLE_STORE_HEADER_SIZE || end > buf.length) throw notAStore(`store size 0x${size.toString(16)} exceeds the file`);
  const start = align(storeHeader + VARIABLE_STORE_HEADER_SIZE);

  const entries: Entry[] = [];
  let at = start;
  while (at + AUTH_HEADER_SIZE <= end && buf.readUInt16LE(at) === VARIABLE_DATA) {
    const nameSize = buf.readUInt32LE(at + 36);
    const dataSize = buf.readUInt32LE(at + 40);
    const total = AUTH_HEADER_SIZE + nameSize + dataSize;
    if (nameSize > end || dataSize > end || at + total > end) {
      throw new Error(`${file}: corrupt variable at 0x${at.toString(16)} (NameSize ${nameSize}, DataSize ${dataSize})`);
    }
    const nameBytes = buf.subarray(at + AUTH_HEADER_SIZE, at + AUTH_HEADER_SIZE + nameSize);
    const nul = nameBytes.findIndex((_, i) => i % 2 === 0 && nameBytes[i] === 0 && nameBytes[i + 1] === 0);
    entries.push({
      offset: at,
      size: total,
      state: buf[at + 2]!,
      name: nameBytes.subarray(0, nul < 0 ? nameBytes.length & ~1 : nul).toString('utf16le'),
      guid: formatGuid(buf, at + 44),
      attributes: buf.readUInt32LE(at + 4),
      nameSize,
      dataSize,
    });
    at = align(at + total);
  }
  return { file, buf, start, end, entries, freeOffset: Math.min(at, end) };
}

const keyOf = (e: { name: string; guid: string }) => `${e.guid}/${e.name}`;

/**
 * The variables the firmware sees: State VAR_ADDED, or a copy left "in deleted transition" by an
 * interrupted update when no VAR_ADDED copy exists (edk2 FindVariableEx does the same).
 */
function liveOf(store: Store): Entry[] {
  const added = new Set(store.entries.filter((e) => e.state === VAR_ADDED).map(keyOf));
  return store.entries.filter(
    (e) => e.state === VAR_ADDED || (e.state === VAR_IN_DELETED_TRANSITION_AND_ADDED && !added.has(keyOf(e))),
  );
}

function liveEntries(store: Store, names: string[]): Entry[] {
  return liveOf(store).filter((e) => e.guid === EFI_GLOBAL_VARIABLE && names.includes(e.name));
}

function encodeVariable(v: NewVariable, state: number): Buffer {
  const name = Buffer.from(`${v.name}\0`, 'utf16le');
  const b = Buffer.alloc(AUTH_HEADER_SIZE + name.length + v.data.length); // zero MonotonicCount, TimeStamp, PubKeyIndex
  b.writeUInt16LE(VARIABLE_DATA, 0);
  b.writeUInt8(state, 2);
  b.writeUInt32LE(v.attributes, 4);
  b.writeUInt32LE(name.length, 36);
  b.writeUInt32LE(v.data.length, 40);
  guidBytes(v.guid).copy(b, 44);
  name.copy(b, AUTH_HEADER_SIZE);
  v.data.copy(b, AUTH_HEADER_SIZE + name.length);
  if (b.length > MAX_VARIABLE_SIZE) throw new Error(`variable ${v.name} would be ${b.length} bytes; the firmware limit is ${MAX_VARIABLE_SIZE}`);
  return b;
}

/**
 * Deletes `doomed` and appends `added` in place, like the firmware does on flash (bits only go from
 * 1 to 0). When the tail has no room, rewrites the variable area with the live variables packed
 * from the start and 0xFF after them, as edk2's Reclaim() does.
 */
function update(store: Store, doomed: Entry[], added: NewVariable[]): Buffer {
  const encoded = added.map((v) => encodeVariable(v, VAR_ADDED));
  const needed = encoded.reduce((n, b) => n + align(b.length), 0);
  const buf = Buffer.from(store.buf);
  const tailIsErased = buf.subarray(store.freeOffset, store.end).every((x) => x === 0xff);
  if (tailIsErased && store.freeOffset + needed <= store.end) {
    let at = store.freeOffset;
    for (const b of encoded) {
      b.copy(buf, at);
      at = align(at + b.length);
    }
    for (const e of doomed) buf[e.offset + 2] = VAR_DELETED_STATE;
    return buf;
  }
  const keep = liveOf(store).filter((e) => !doomed.includes(e));
  const packed: Buffer[] = keep.map((e) => {
    const b = Buffer.from(store.buf.subarray(e.offset, e.offset + e.size));
    b[2] = VAR_ADDED; // an "in deleted transition" survivor is the only copy now
    return b;
  });
  packed.push(...encoded);
  if (store.start + packed.reduce((n, b) => n + align(b.length), 0) > store.end) {
    throw new Error(`NVRAM variable store is full: ${store.file}`);
  }
  buf.fill(0xff, store.start, store.end);
  let at = store.start;
  for (const b of packed) {
    b.copy(buf, at);
    at = align(at + b.length);
  }
  return buf;
}

/** tmp file in the same directory, fsync, rename: QEMU never sees a half-written store. */
async function writeAtomically(file: string, data: Buffer): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', (await stat(file)).mode & 0o7777);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
