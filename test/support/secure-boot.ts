// Secure Boot keys for tests: an RSA key and its self-signed certificate, made by openssl.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export function secureBootKeyPair(dir: string, name: string): { key: string; cert: string } {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=uki-on-demand test ${name}`,
    '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { key, cert };
}
