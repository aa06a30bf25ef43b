// The BMC's OVMF variable-store editor: load option bytes, replacement, deletion, input checks,
// store-full and compaction, all on copies of Debian's pristine OVMF_VARS_4M.fd.
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  buildHttpBootLoadOption,
  clearBootNext,
  EFI_GLOBAL_VARIABLE,
  readVariables,
  setHttpBootNext,
  storeUsage,
} from '../../lab/bmc/qemu/nvram.js';

const PRISTINE = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const URI = 'http://10.0.2.2:8080/artifacts/abc/uki.efi';

let dir: string;
let n = 0;

beforeAll(async () => {
  if (!existsSync(PRISTINE)) throw new Error(`${PRISTINE} is missing: install the Debian package \`ovmf\` (scripts/install-deps.sh)`);
  dir = await mkdtemp(join(tmpdir(), 'uod-nvram-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function freshCopy(): Promise<string> {
  const f = join(dir, `vars-${n++}.fd`);
  await copyFile(PRISTINE, f);
  return f;
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Splits an EFI_LOAD_OPTION into its fields and the device path into [type, subtype, bytes] nodes. */
function parseLoadOption(data: Buffer) {
  const attributes = data.readUInt32LE(0);
  const pathLength = data.readUInt16LE(4);
  let at = 6;
  while (data.readUInt16LE(at) !== 0) at += 2;
  const description = data.subarray(6, at).toString('utf16le');
  const path = data.subarray(at + 2, at + 2 + pathLength);
  const optional = data.subarray(at + 2 + pathLength);
  const nodes: Buffer[] = [];
  for (let p = 0; p < path.length; ) {
    const len = path.readUInt16LE(p + 2);
    nodes.push(path.subarray(p, p + len));
    p += len;
  }
  return { attributes, pathLength, description, path, optional, nodes };
}

/** Appends a live variable by hand (60-byte AUTHENTICATED_VARIABLE_HEADER + name + data) at the store's free tail. */
async function appendRawVariable(file: string, name: string, data: Buffer, stamp = 0): Promise<void> {
  const buf = await readFile(file);
  let at = 0x64;
  while (buf.readUInt16LE(at) === 0x55aa) at = (at + 60 + buf.readUInt32LE(at + 36) + buf.readUInt32LE(at + 40) + 3) & ~3;
  const nameBytes = Buffer.from(`${name}\0`, 'utf16le');
  const h = Buffer.alloc(60);
  h.writeUInt16LE(0x55aa, 0);
  h[2] = 0x3f;
  h.writeUInt32LE(0x7, 4);
  if (stamp) h.fill(stamp, 8, 36); // MonotonicCount, TimeStamp, PubKeyIndex as an authenticated variable has them
  h.writeUInt32LE(nameBytes.length, 36);
  h.writeUInt32LE(data.length, 40);
  hex('e6a8d0a1 b37f 1d4f 9c2e 5f0a1b2c3d4e 0000').copy(h, 44); // some vendor GUID
  const v = Buffer.concat([h, nameBytes, data]);
  if (at + v.length > 0x40000) throw new Error('test filler does not fit');
  v.copy(buf, at);
  await writeFile(file, buf);
}

describe('setHttpBootNext', () => {
  test('writes Boot0100 and BootNext and leaves the FV and store headers alone', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3 });
    const before = await readFile(PRISTINE);
    const after = await readFile(f);
    expect(after.length).toBe(540672);
    expect(after.subarray(0, 0x64).equals(before.subarray(0, 0x64))).toBe(true);
    // Only the variable area changed: the FTW blocks after the store are untouched.
    expect(after.subarray(0x40000).equals(before.subarray(0x40000))).toBe(true);

    const vars = await readVariables(f);
    expect(vars.map((v) => v.name)).toEqual(['Boot0100', 'BootNext']);
    for (const v of vars) {
      expect(v.guid).toBe(EFI_GLOBAL_VARIABLE);
      expect(v.attributes).toBe(0x7);
    }
    expect(vars[1]!.data).toEqual(hex('0001'));

    // Raw header of the first variable, at the store's first slot.
    const h = after.subarray(0x64, 0x64 + 60);
    expect(h.readUInt16LE(0)).toBe(0x55aa);
    expect(h[2]).toBe(0x3f);
    expect(h.subarray(8, 36).every((b) => b === 0)).toBe(true); // MonotonicCount, TimeStamp, PubKeyIndex
    expect(h.readUInt32LE(36)).toBe(18); // "Boot0100\0" in UTF-16
    expect(h.subarray(44, 60)).toEqual(hex('61dfe48b ca93 d211 aa0d 00e098032b8c'));
    expect(after.subarray(0x64 + 60, 0x64 + 60 + 18).toString('utf16le')).toBe('Boot0100\0');
    // The next header starts at the next 4-byte boundary.
    expect(vars[1]!.offset).toBe((0x64 + 60 + 18 + vars[0]!.data.length + 3) & ~3);
  });

  test('device path bytes: PciRoot / Pci / MAC / IPv4(DHCP) / Uri / End', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: URI, mac: '52-54-00-AB-cd-EF', pciDevice: 0x1c, pciFunction: 2, description: 'HTTP über BMC' });
    const boot = (await readVariables(f)).find((v) => v.name === 'Boot0100')!;
    const opt = parseLoadOption(boot.data);
    expect(opt.attributes).toBe(1);
    expect(opt.description).toBe('HTTP über BMC');
    expect(opt.optional.length).toBe(0);
    expect(opt.pathLength).toBe(opt.path.length);
    const [root, pci, mac, ipv4, uri, end] = opt.nodes;
    expect(opt.nodes).toHaveLength(6);
    expect(root).toEqual(hex('02 01 0c00 d041030a 00000000'));
    expect(pci).toEqual(hex('01 01 0600 02 1c')); // function first, then device
    expect(mac).toEqual(Buffer.concat([hex('03 0b 2500 525400abcdef'), Buffer.alloc(26), hex('01')]));
    expect(ipv4).toEqual(Buffer.concat([hex('03 0c 1b00'), Buffer.alloc(23)]));
    expect(uri!.subarray(0, 2)).toEqual(hex('03 18'));
    expect(uri!.readUInt16LE(2)).toBe(4 + URI.length);
    expect(uri!.subarray(4).toString('latin1')).toBe(URI);
    expect(end).toEqual(hex('7f ff 0400'));
  });

  test('staticIpv4: the IPv4 node carries StaticIpAddress 1, local/remote address, TCP, gateway and mask', () => {
    const uri = 'http://192.0.2.1:8080/boot.efi';
    const opt = parseLoadOption(
      buildHttpBootLoadOption({ uri, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.50', prefixLength: 24, gateway: '192.0.2.254' } }),
    );
    expect(opt.nodes.map((x) => x.subarray(0, 2).toString('hex'))).toEqual(['0201', '0101', '030b', '030c', '0318', '7fff']);
    const ipv4 = opt.nodes[3]!;
    expect(ipv4.readUInt16LE(2)).toBe(27); // 4-byte header + 23-byte body
    const body = ipv4.subarray(4);
    expect([...body.subarray(0, 4)].join('.')).toBe('192.0.2.50'); // LocalIpAddress
    expect([...body.subarray(4, 8)].join('.')).toBe('192.0.2.1'); // RemoteIpAddress: the URI's host
    expect(body.readUInt16LE(8)).toBe(0); // LocalPort
    expect(body.readUInt16LE(10)).toBe(0); // RemotePort
    expect(body.readUInt16LE(12)).toBe(6); // Protocol: TCP
    expect(body[14]).toBe(1); // StaticIpAddress: TRUE
    expect([...body.subarray(15, 19)].join('.')).toBe('192.0.2.254'); // GatewayIpAddress
    expect([...body.subarray(19, 23)].join('.')).toBe('255.255.255.0'); // SubnetMask
    expect(ipv4).toEqual(hex('03 0c 1b00 c0000232 c0000201 0000 0000 0600 01 c00002fe ffffff00'));

    // No gateway → 0.0.0.0; a host name in the URI → RemoteIp 0.0.0.0; odd prefixes give the right mask.
    const named = parseLoadOption(
      buildHttpBootLoadOption({ uri: 'http://boot.example:8080/x.efi', mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '10.1.2.3', prefixLength: 20 } }),
    ).nodes[3]!;
    expect(named).toEqual(hex('03 0c 1b00 0a010203 00000000 0000 0000 0600 01 00000000 fffff000'));
    // Everything else in the path is what the DHCP variant writes.
    const dhcp = parseLoadOption(buildHttpBootLoadOption({ uri, mac: '52:54:00:12:34:56', pciDevice: 3 }));
    expect(dhcp.nodes[3]).toEqual(Buffer.concat([hex('03 0c 1b00'), Buffer.alloc(23)]));
    expect(opt.nodes.filter((_, i) => i !== 3)).toEqual(dhcp.nodes.filter((_, i) => i !== 3));
  });

  test('without mac and pci the path is Uri() / End only; optionNumber and defaults', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: 'https://boot.example/x.efi', optionNumber: 0xbeef });
    const vars = await readVariables(f);
    expect(vars.map((v) => v.name)).toEqual(['BootBEEF', 'BootNext']);
    expect(vars[1]!.data).toEqual(hex('efbe'));
    const opt = parseLoadOption(vars[0]!.data);
    expect(opt.description).toBe('UEFI HTTP Boot');
    expect(opt.nodes.map((x) => x.subarray(0, 2).toString('hex'))).toEqual(['0318', '7fff']);
    expect(buildHttpBootLoadOption({ uri: 'https://boot.example/x.efi' })).toEqual(vars[0]!.data);
  });

  test('replacing leaves exactly one live Boot0100 and BootNext; old copies are marked 0x3c', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: 'http://a.example/1.efi', mac: '52:54:00:12:34:56', pciDevice: 3 });
    const first = await readVariables(f);
    await setHttpBootNext(f, { uri: 'http://a.example/2.efi' });
    await setHttpBootNext(f, { uri: 'http://a.example/3.efi' });
    const vars = await readVariables(f);
    expect(vars.filter((v) => v.name === 'Boot0100')).toHaveLength(1);
    expect(vars.filter((v) => v.name === 'BootNext')).toHaveLength(1);
    expect(parseLoadOption(vars.find((v) => v.name === 'Boot0100')!.data).nodes[0]!.subarray(4).toString()).toBe('http://a.example/3.efi');
    const buf = await readFile(f);
    for (const v of first) expect(buf[v.offset + 2]).toBe(0x3c);
    const usage = await storeUsage(f);
    expect(usage.capacity).toBe(0x40000 - 0x64);
    expect(usage.reclaimable).toBeGreaterThan(0);
    expect(usage.live + usage.reclaimable + usage.free).toBe(usage.capacity);
  });

  test('other variables are kept, and no temporary file is left behind', async () => {
    const f = await freshCopy();
    await appendRawVariable(f, 'Other', Buffer.from('keep me'));
    await setHttpBootNext(f, { uri: URI });
    await clearBootNext(f);
    const vars = await readVariables(f);
    expect(vars.map((v) => [v.name, v.data.toString()])).toEqual([['Other', 'keep me']]);
    expect((await readdir(dir)).filter((x) => x.endsWith('.tmp'))).toEqual([]);
  });
});

describe('clearBootNext', () => {
  test('removes BootNext and Boot0100; a second call is a no-op', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3 });
    await clearBootNext(f);
    expect(await readVariables(f)).toEqual([]);
    const once = await readFile(f);
    await clearBootNext(f);
    expect((await readFile(f)).equals(once)).toBe(true);
    // Removal is by State only: the bytes are still there, marked deleted.
    expect(once[0x64 + 2]).toBe(0x3c);
    expect(once.readUInt16LE(0x64)).toBe(0x55aa);
  });

  test('removes the named option number only', async () => {
    const f = await freshCopy();
    await setHttpBootNext(f, { uri: URI, optionNumber: 7 });
    await clearBootNext(f, { optionNumber: 8 });
    expect((await readVariables(f)).map((v) => v.name)).toEqual(['Boot0007']);
  });
});

describe('input errors', () => {
  test.each([
    [{ uri: 'tftp://10.0.2.2/boot.efi' }, /http:\/\/ or https:\/\//],
    [{ uri: '10.0.2.2/boot.efi' }, /http:\/\/ or https:\/\//],
    [{ uri: '' }, /uri is required/],
    [{ uri: 'http://host/a b.efi' }, /printable ASCII/],
    [{ uri: 'http://hóst/a.efi' }, /printable ASCII/],
    [{ uri: `http://h/${'a'.repeat(2048)}` }, /limit is 2048/],
    [{ uri: 'http://[zz/a.efi' }, /not a valid URL/],
    [{ uri: URI, mac: '52:54:00:12:34' , pciDevice: 3 }, /mac must look like/],
    [{ uri: URI, mac: '52:54:00-12:34:56', pciDevice: 3 }, /mac must look like/],
    [{ uri: URI, mac: '52:54:00:12:34:5g', pciDevice: 3 }, /mac must look like/],
    [{ uri: URI, mac: '52:54:00:12:34:56' }, /mac and pciDevice must be given together/],
    [{ uri: URI, pciDevice: 3 }, /mac and pciDevice must be given together/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 32 }, /pciDevice must be an integer 0..31/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, pciFunction: 8 }, /pciFunction must be an integer 0..7/],
    [{ uri: URI, staticIpv4: { address: '192.0.2.50', prefixLength: 24 } }, /staticIpv4 needs mac and pciDevice/],
    [{ uri: URI, mac: '52:54:00:12:34:56', staticIpv4: { address: '192.0.2.50', prefixLength: 24 } }, /staticIpv4 needs mac and pciDevice/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.256', prefixLength: 24 } }, /staticIpv4.address must be a dotted-quad/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.050', prefixLength: 24 } }, /staticIpv4.address must be a dotted-quad/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: 'fe80::1', prefixLength: 24 } }, /staticIpv4.address must be a dotted-quad/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '224.0.0.5', prefixLength: 24 } }, /staticIpv4.address must be a unicast/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.0', prefixLength: 24 } }, /network or broadcast/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.50', prefixLength: 0 } }, /staticIpv4.prefixLength must be an integer 1..32/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.50', prefixLength: 33 } }, /staticIpv4.prefixLength must be an integer 1..32/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.50', prefixLength: 24, gateway: '192.0.3.1' } }, /staticIpv4.gateway 192.0.3.1 is not inside 192.0.2.50\/24/],
    [{ uri: URI, mac: '52:54:00:12:34:56', pciDevice: 3, staticIpv4: { address: '192.0.2.50', prefixLength: 24, gateway: 'router' } }, /staticIpv4.gateway must be a dotted-quad/],
    [{ uri: URI, optionNumber: 0x10000 }, /optionNumber must be/],
    [{ uri: URI, optionNumber: 1.5 }, /optionNumber must be/],
    [{ uri: URI, description: '' }, /non-empty/],
    [{ uri: URI, description: 'a\0b' }, /control characters/],
    [{ uri: URI, description: 'x'.repeat(129) }, /limit is 128/],
  ])('%j → %s', async (opts, message) => {
    const f = await freshCopy();
    await expect(setHttpBootNext(f, opts)).rejects.toThrow(message);
    expect((await readFile(f)).equals(await readFile(PRISTINE))).toBe(true);
  });

  test('a file that is not an authenticated variable store is named in the error', async () => {
    const short = join(dir, 'short.fd');
    await writeFile(short, Buffer.alloc(100));
    await expect(readVariables(short)).rejects.toThrow(`${short} is not an OVMF authenticated-variable store`);

    const plain = await freshCopy();
    const buf = await readFile(plain);
    hex('1636cfdd 7532 6441 98b6 fe85707ffe7d').copy(buf, 0x48); // gEfiVariableGuid: the non-authenticated format
    await writeFile(plain, buf);
    await expect(setHttpBootNext(plain, { uri: URI })).rejects.toThrow(new RegExp(`${plain} is not an OVMF authenticated-variable store \\(it is a non-authenticated`));

    const code = '/usr/share/OVMF/OVMF_CODE_4M.fd';
    await expect(readVariables(code)).rejects.toThrow(`${code} is not an OVMF authenticated-variable store`);
    await expect(readVariables(join(dir, 'missing.fd'))).rejects.toThrow(/ENOENT/);
  });
});

describe('store full and compaction', () => {
  test('repeated replacements compact the store instead of running out', async () => {
    const f = await freshCopy();
    await appendRawVariable(f, 'Before', Buffer.from('first'), 0x5a);
    const rawBefore = (await readFile(f)).subarray(0x64, 0x64 + 60 + 14 + 5);
    const long = `http://10.0.2.2:8080/${'x'.repeat(2000)}.efi`;
    let compacted = false;
    let lastFree = (await storeUsage(f)).free;
    // Each round appends ~2.2 KB; the 256 KB store needs ~120 rounds before it must compact.
    for (let i = 0; i < 150; i++) {
      await setHttpBootNext(f, { uri: `${long}?${i}` });
      const usage = await storeUsage(f);
      if (usage.free > lastFree) {
        compacted = true;
        expect(usage.reclaimable).toBe(0);
      }
      lastFree = usage.free;
    }
    expect(compacted).toBe(true);
    const vars = await readVariables(f);
    expect(vars.map((v) => v.name)).toEqual(['Before', 'Boot0100', 'BootNext']);
    expect(vars[0]!.data.toString()).toBe('first');
    // Compaction moves variables byte for byte, authentication fields included.
    expect((await readFile(f)).subarray(vars[0]!.offset, vars[0]!.offset + rawBefore.length)).toEqual(rawBefore);
    expect(vars[1]!.data.includes(Buffer.from(`${long}?149`))).toBe(true);
    const buf = await readFile(f);
    expect(buf.subarray(0, 0x64).equals((await readFile(PRISTINE)).subarray(0, 0x64))).toBe(true);
    // After the last live variable the store is erased flash.
    const usage = await storeUsage(f);
    expect(buf.subarray(0x40000 - usage.free, 0x40000).every((b) => b === 0xff)).toBe(true);
  });

  test('a store full of live variables is an error and the file is unchanged', async () => {
    const f = await freshCopy();
    // Fill with 8 KB live variables until less than one load option's worth is left.
    for (let i = 0; (await storeUsage(f)).free > 8172 + 400; i++) await appendRawVariable(f, `Fill${i}`, Buffer.alloc(8100, i));
    const usage = await storeUsage(f);
    await appendRawVariable(f, 'Last', Buffer.alloc(usage.free - 60 - 10 - 300));
    const before = await readFile(f);
    await expect(setHttpBootNext(f, { uri: `http://h/${'y'.repeat(300)}` })).rejects.toThrow('NVRAM variable store is full');
    expect((await readFile(f)).equals(before)).toBe(true);
    // A short one still fits in what is left.
    await setHttpBootNext(f, { uri: 'http://h/a.efi' });
    expect((await readVariables(f)).filter((v) => v.name.startsWith('Boot'))).toHaveLength(2);
  });
});
