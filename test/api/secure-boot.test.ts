// Secure Boot signing in the service, as a process: start-up refuses a key it cannot sign with in one
// line, every UKI is signed with the operator's key (sbverify against the certificate; another
// certificate and a changed byte fail), the ISO carries the signed UKI, the certificate is part of the
// build id, and the key's bytes appear nowhere the service writes.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { requireBaseArtifacts } from '../support/prerequisites.js';
import { secureBootKeyPair } from '../support/secure-boot.js';
import { api, tinyRequest, waitForBuild } from '../support/service.js';
import { serviceTempDir, spawnService, startService, stopAllServices } from '../support/service-process.mjs';
import { checkEveryResponse } from '../support/openapi.js';

// Every response this file receives must be described by openapi.yaml.
checkEveryResponse();

requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img');
for (const tool of ['sbsign', 'sbverify']) {
  if (spawnSync('which', [tool]).status !== 0) throw new Error(`${tool} is missing: install the Debian package sbsigntool (make deps)`);
}
afterAll(() => stopAllServices());

const keys = serviceTempDir('sb-keys');
const ours = secureBootKeyPair(keys, 'ours');
const other = secureBootKeyPair(keys, 'other');
const keyBody = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));

/** Runs `serve` with these flags until it exits or listens; its exit code and output. */
async function startUp(args: string[]): Promise<{ code: number | null; output: string }> {
  const s = spawnService({ args });
  const outcome = await Promise.race([s.exited.then((e) => e.code), s.listening.then(() => 'listening' as const, () => null)]);
  if (outcome === 'listening') await s.kill();
  await s.exited;
  return { code: outcome === 'listening' ? -1 : (outcome as number | null), output: s.logs() };
}

describe('start-up refuses a key it cannot sign with, in one line', () => {
  test.each([
    ['a key of another certificate', () => ['--secure-boot-key', other.key, '--secure-boot-cert', ours.cert], /--secure-boot-key does not match --secure-boot-cert/],
    ['an unreadable key', () => ['--secure-boot-key', path.join(keys, 'missing.key'), '--secure-boot-cert', ours.cert], /--secure-boot-key: cannot read .*missing\.key: ENOENT/],
    ['a certificate that is not one', () => ['--secure-boot-key', ours.key, '--secure-boot-cert', ours.key], /--secure-boot-cert: .* is not a PEM X\.509 certificate/],
  ])('%s', async (_label, args, message) => {
    const r = await startUp(args());
    expect(r.code).toBe(1);
    const lines = r.output.trim().split('\n').filter((l) => l.startsWith('uki-on-demand:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    for (const line of keyBody(ours.key).concat(keyBody(other.key))) expect(r.output).not.toContain(line);
  });

  test('an EC key is refused naming what Secure Boot needs; one option without the other is a usage error', async () => {
    const ecKey = path.join(keys, 'ec.key');
    const ecCert = path.join(keys, 'ec.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=ec', '-keyout', ecKey, '-out', ecCert], { stdio: 'ignore' });
    const ec = await startUp(['--secure-boot-key', ecKey, '--secure-boot-cert', ecCert]);
    expect(ec.code).toBe(1);
    expect(ec.output).toMatch(/--secure-boot-key: .* is a ec key; UEFI Secure Boot needs RSA/);
    const alone = await startUp(['--secure-boot-key', ours.key]);
    expect(alone.code).toBe(2);
    expect(alone.output).toMatch(/--secure-boot-key and --secure-boot-cert must be given together/);
  });
});

test('a service that does not sign says so at /api/v1/secure-boot', async () => {
  const svc = await startService();
  const r = await api(`${svc.url}/api/v1/secure-boot`);
  expect([r.status, r.body.message]).toEqual([404, 'this service does not sign its builds: start it with --secure-boot-key and --secure-boot-cert']);
});

describe('signed builds', () => {
  test('the UKI verifies against the certificate only; the ISO carries it; a new certificate is a new build; the key is nowhere', { timeout: 180_000 }, async () => {
    const svc = await startService({ args: ['--secure-boot-key', ours.key, '--secure-boot-cert', ours.cert] });
    const request = tinyRequest({ cmdline: 'console=ttyS0 signed' });
    const post = await api(`${svc.url}/api/v1/builds`, { method: 'POST', json: request });
    expect(post.status).toBe(202);
    const id = post.body.id as string;
    const done = await waitForBuild(svc.url, id);
    expect(done.state).toBe('completed');
    const artifacts = done.artifacts!;
    const dir = path.join(svc.dataDir!, 'builds', id);
    const uki = path.join(dir, 'uki.efi');

    // Authenticode: verifies with our certificate, not with another one, and not once a byte changed.
    expect(spawnSync('sbverify', ['--cert', ours.cert, uki]).status).toBe(0);
    expect(spawnSync('sbverify', ['--cert', other.cert, uki]).status).not.toBe(0);
    const tampered = path.join(serviceTempDir('tampered'), 'uki.efi');
    const bytes = fs.readFileSync(uki);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = bytes[middle]! ^ 0xff;
    fs.writeFileSync(tampered, bytes);
    expect(spawnSync('sbverify', ['--cert', ours.cert, tampered]).status).not.toBe(0);

    // The served artifact is the signed one, with the digest of the signed bytes.
    const served = await fetch(artifacts.ukiUrl);
    expect(Buffer.from(await served.arrayBuffer()).equals(fs.readFileSync(uki))).toBe(true);
    // The ISO's EFI image is the signed UKI itself, as \EFI\BOOT\BOOTX64.EFI: no unsigned loader
    // before it (read back with xorriso and mtools).
    const out = serviceTempDir('iso-out');
    execFileSync('xorriso', ['-osirrox', 'on', '-indev', path.join(dir, 'boot.iso'), '-extract', '/efiboot.img', path.join(out, 'efiboot.img')], { stdio: 'ignore' });
    execFileSync('mcopy', ['-i', path.join(out, 'efiboot.img'), '::/EFI/BOOT/BOOTX64.EFI', path.join(out, 'BOOTX64.EFI')]);
    expect(fs.readFileSync(path.join(out, 'BOOTX64.EFI')).equals(fs.readFileSync(uki))).toBe(true);
    expect(execFileSync('mdir', ['-/', '-b', '-i', path.join(out, 'efiboot.img'), '::/']).toString().trim().split('\n')).toEqual(['::/EFI/', '::/EFI/BOOT/', '::/EFI/BOOT/BOOTX64.EFI']);

    // The key's bytes are in no record, log line or artifact the service wrote.
    const body = keyBody(ours.key);
    const dataDir = svc.dataDir!;
    for (const file of fs.readdirSync(dataDir, { recursive: true }) as string[]) {
      const p = path.join(dataDir, file);
      if (!fs.statSync(p).isFile() || fs.statSync(p).size > 1_000_000) continue;
      const text = fs.readFileSync(p, 'latin1');
      for (const line of body) expect(text.includes(line), `${file} holds a line of the key`).toBe(false);
    }
    for (const line of body) expect(svc.logs()).not.toContain(line);

    // The certificate to enroll, from the API: the file's, with its fingerprint.
    const published = await api(`${svc.url}/api/v1/secure-boot`);
    expect(published.status).toBe(200);
    expect(published.body.certificate).toBe(fs.readFileSync(ours.cert, 'utf8'));
    const fingerprint = execFileSync('openssl', ['x509', '-in', ours.cert, '-noout', '-fingerprint', '-sha256']).toString().split('=')[1]!.trim().replace(/:/g, '').toLowerCase();
    expect(published.body.certSha256).toBe(fingerprint);

    // Another certificate: the same request is another build.
    await svc.stop();
    const svc2 = await startService({ dataDir: svc.dataDir!, args: ['--secure-boot-key', other.key, '--secure-boot-cert', other.cert] });
    const post2 = await api(`${svc2.url}/api/v1/builds`, { method: 'POST', json: request });
    expect(post2.body.id).not.toBe(id);
  });
});
