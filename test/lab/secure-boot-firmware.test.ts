// Proof that the lab's Secure Boot firmware enforces: OVMF's Secure Boot build with a variable store
// whose db holds a key the lab enrolled (lab/bmc/qemu/secure-boot-vars.ts) boots, by UEFI HTTP boot,
// a tiny UKI signed with that key and, as a CD, the ISO of a signed build; it refuses an unsigned
// UKI, one signed with another key, a signed one with one byte changed in its .initrd, and the ISO of
// an unsigned build (its GRUB), all with the same firmware and NVRAM in one test.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clearBootNext, setHttpBootNext } from '../../lab/bmc/qemu/nvram.js';
import { enrollSecureBootKeys } from '../../lab/bmc/qemu/secure-boot-vars.js';
import { readPe } from '../../src/image/pe.js';
import { buildDirectIso } from '../../src/image/iso-direct.js';
import { assembleIso } from '../../src/image/iso.js';
import { SecureBootSigner } from '../../src/image/secure-boot.js';
import { assembleUki } from '../../src/image/uki.js';
import { secureBootKeyPair } from '../support/secure-boot.js';
import { BASE_ARTIFACTS, tempDir } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img');
const CODE = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
const VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
for (const f of [CODE, VARS]) if (!existsSync(f)) throw new Error(`${f} is missing: install the Debian package ovmf`);
/** Under TCG the fetch comes ≈ 10 s after start, the kernel's first line a few seconds later. */
const DEADLINE_MS = 150_000;
const BOOTED = /Linux version \d/;
const REFUSED = /failed to load Boot0\d+ .*: (Access Denied|Security Violation)/;

let dir: string;
let server: Server;
let port: number;
const files = new Map<string, string>();
let qemu: ChildProcess | undefined;

beforeAll(async () => {
  dir = tempDir('secure-boot-fw');
  server = createServer((req, res) => {
    const file = files.get(req.url ?? '');
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) return void res.writeHead(404, { 'content-length': '0' }).end();
    const body = readFileSync(file);
    res.writeHead(200, { 'content-type': 'application/efi', 'content-length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

/** `timeout` and QEMU under it: the whole process group, so no QEMU outlives its boot. */
async function killQemu(): Promise<void> {
  const p = qemu;
  if (!p || p.pid === undefined) return;
  const exited = p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', r));
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  await exited;
  qemu = undefined;
}

afterAll(async () => {
  await killQemu();
  await new Promise<void>((r) => server.close(() => r()));
});

async function tinyUki(name: string): Promise<string> {
  const out = path.join(dir, `${name}.efi`);
  await assembleUki({
    arch: 'amd64', kernelPath: path.join(BASE_ARTIFACTS, 'vmlinuz-amd64'), initrdPath: path.join(BASE_ARTIFACTS, 'initramfs-tiny-amd64.img'),
    cmdline: 'console=ttyS0 panic=-1', osRelease: 'ID=uki-on-demand-test\n', outPath: out, workDir: dir,
  });
  return out;
}

/**
 * Boots Boot0100 = http://10.0.2.2:<port>/<name>.efi with this store, or with `cdrom` the ISO as the
 * only boot device; what the console shows.
 */
async function boot(vars: string, name: string, cdrom?: string): Promise<'booted' | 'refused'> {
  if (cdrom) await clearBootNext(vars);
  else await setHttpBootNext(vars, { uri: `http://10.0.2.2:${port}/${name}.efi` });
  const serial = path.join(dir, `${name}.serial.log`);
  writeFileSync(serial, '');
  qemu = spawn('timeout', ['-s', 'KILL', String(DEADLINE_MS / 1000 + 10), 'qemu-system-x86_64',
    '-machine', 'q35,smm=on,accel=tcg', '-global', 'driver=cfi.pflash01,property=secure,value=on', '-m', '512', '-nodefaults', '-display', 'none',
    '-serial', `file:${serial}`,
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
    ...(cdrom
      ? ['-drive', `file=${cdrom},media=cdrom,if=none,id=cd,readonly=on`, '-device', 'ide-cd,drive=cd,bootindex=0']
      : ['-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=,addr=0x3'])], { stdio: 'ignore', detached: true });
  const started = Date.now();
  try {
    for (;;) {
      const text = readFileSync(serial, 'latin1');
      if (BOOTED.test(text)) return 'booted';
      if (REFUSED.test(text)) return 'refused';
      if (Date.now() - started > DEADLINE_MS) throw new Error(`${name}: neither a kernel nor a refusal within ${DEADLINE_MS / 1000} s:\n${text.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await killQemu();
  }
}

describe('OVMF with Secure Boot on and the lab\'s key in db', () => {
  test('boots the UKI signed with the enrolled key; refuses unsigned, another key\'s, and a changed byte in .initrd', { timeout: 900_000 }, async () => {
    const enrolled = secureBootKeyPair(dir, 'enrolled');
    const other = secureBootKeyPair(dir, 'other');
    const owner = secureBootKeyPair(dir, 'platform');
    const vars = path.join(dir, 'vars.fd');
    copyFileSync(VARS, vars);
    await enrollSecureBootKeys(vars, { pk: readFileSync(owner.cert, 'utf8'), kek: [readFileSync(owner.cert, 'utf8')], db: [readFileSync(enrolled.cert, 'utf8')] });

    const signedWith = async (name: string, pair: { key: string; cert: string }) => {
      const file = await tinyUki(name);
      await (await SecureBootSigner.load(pair.key, pair.cert)).signInPlace(file);
      return file;
    };
    files.set('/signed.efi', await signedWith('signed', enrolled));
    files.set('/unsigned.efi', await tinyUki('unsigned'));
    files.set('/other-key.efi', await signedWith('other-key', other));
    const tampered = await signedWith('tampered', enrolled);
    const pe = await readPe(tampered);
    const initrd = pe.sections.find((s) => s.name === '.initrd')!;
    const bytes = readFileSync(tampered);
    const at = initrd.rawPointer + Math.floor(initrd.virtualSize / 2);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(tampered, bytes);
    files.set('/tampered.efi', tampered);

    // The ISOs: a signed build's (its EFI image is the signed UKI) and an unsigned build's (GRUB).
    const signedIso = path.join(dir, 'signed.iso');
    await buildDirectIso({ arch: 'amd64', ukiPath: files.get('/signed.efi')!, outPath: signedIso, volumeId: 'UOD_SIGNED', workDir: dir });
    const unsignedIso = path.join(dir, 'unsigned.iso');
    await assembleIso({ arch: 'amd64', ukiPath: files.get('/unsigned.efi')!, outPath: unsignedIso, volumeId: 'UOD_UNSIGNED', workDir: dir });

    // Refusals first, then the signed ones on the same store: "nothing boots" cannot pass.
    expect(await boot(vars, 'unsigned')).toBe('refused');
    expect(await boot(vars, 'other-key')).toBe('refused');
    expect(await boot(vars, 'tampered')).toBe('refused');
    expect(await boot(vars, 'unsigned-iso', unsignedIso)).toBe('refused');
    expect(await boot(vars, 'signed')).toBe('booted');
    expect(await boot(vars, 'signed-iso', signedIso)).toBe('booted');
  });
});
