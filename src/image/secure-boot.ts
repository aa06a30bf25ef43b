// Secure Boot signing with the operator's key: every EFI program a build hands to a firmware is
// signed (Authenticode, Debian's sbsign) with one key and certificate. The certificate's fingerprint
// names the signer everywhere (build id, status, log); the private key's bytes stay in this file's
// reader and in sbsign, never in a log, a record, an error or the API.
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, rename, rm } from 'node:fs/promises';
import { runTool } from './tools.js';

export const SBSIGN = 'sbsign';

/** A key or certificate that cannot be used; the message names the option and never the key's bytes. */
export class SigningSetupError extends Error {}

export class SecureBootSigner {
  private constructor(
    private readonly keyPath: string,
    private readonly certPath: string,
    /** SHA-256 of the certificate's DER, lower-case hex without colons. */
    readonly certFingerprint: string,
    readonly certSubject: string,
  ) {}

  /** Reads and checks both files: a PEM private key, a PEM X.509 certificate, and that they belong together. */
  static async load(keyPath: string, certPath: string): Promise<SecureBootSigner> {
    const read = async (path: string, option: string) => {
      try {
        return await readFile(path);
      } catch (err) {
        throw new SigningSetupError(`${option}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    };
    const [keyPem, certPem] = await Promise.all([read(keyPath, '--secure-boot-key'), read(certPath, '--secure-boot-cert')]);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(certPem);
    } catch {
      throw new SigningSetupError(`--secure-boot-cert: ${certPath} is not a PEM X.509 certificate`);
    }
    let key;
    try {
      key = createPrivateKey(keyPem);
    } catch {
      // Not the parser's message: it could quote what it read.
      throw new SigningSetupError(`--secure-boot-key: ${keyPath} is not an unencrypted PEM private key`);
    }
    if (key.asymmetricKeyType !== 'rsa') {
      throw new SigningSetupError(`--secure-boot-key: ${keyPath} is a ${key.asymmetricKeyType} key; UEFI Secure Boot needs RSA (2048 bits is what firmwares take)`);
    }
    const samePublic = createPublicKey(key).export({ type: 'spki', format: 'der' }).equals(cert.publicKey.export({ type: 'spki', format: 'der' }));
    if (!samePublic) throw new SigningSetupError(`--secure-boot-key does not match --secure-boot-cert (${certPath}, ${cert.subject.replace(/\n/g, ', ')})`);
    const fingerprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
    return new SecureBootSigner(keyPath, certPath, fingerprint, cert.subject.replace(/\n/g, ', '));
  }

  /** Signs the EFI program at `path` in place (a signed copy beside it, then renamed over it). */
  async signInPlace(path: string, signal?: AbortSignal): Promise<void> {
    const signed = `${path}.signed`;
    try {
      await runTool(SBSIGN, ['--key', this.keyPath, '--cert', this.certPath, '--output', signed, path], { signal });
      await rename(signed, path);
    } finally {
      await rm(signed, { force: true });
    }
  }

  /** The certificate (PEM) and its fingerprint: what servers enroll in db. */
  async certificate(): Promise<{ certificate: string; certSha256: string; subject: string }> {
    const pem = new X509Certificate(await readFile(this.certPath)).toString();
    return { certificate: pem, certSha256: this.certFingerprint, subject: this.certSubject };
  }

  /** What may be shown: the certificate, never the key. */
  toJSON(): { certSha256: string; subject: string } {
    return { certSha256: this.certFingerprint, subject: this.certSubject };
  }
}
