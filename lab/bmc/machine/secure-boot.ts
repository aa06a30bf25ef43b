// The server's Secure Boot setup as its BMC manages it (Redfish SecureBoot, DSP0268): the switch, the
// keys the platform owner enrolled (PK, KEK, fixed here), and the certificates in db, which an
// orchestrator adds. Changes reach the firmware's NVRAM at the next power-on, as on a real server.
import { X509Certificate } from 'node:crypto';

export interface DbCertificate {
  id: string;
  pem: string;
}

/** What the firmware is given at one power-on. */
export interface SecureBootPlan {
  enabled: boolean;
  pk: string;
  kek: string[];
  db: string[];
}

export class SecureBootError extends Error {
  constructor(
    message: string,
    readonly property: string,
  ) {
    super(message);
  }
}

export class SecureBootSetup {
  private db: DbCertificate[];
  private nextId = 1;
  /** SecureBootEnable: what the next boot uses. */
  enabled: boolean;
  /** SecureBootCurrentBoot: what the running (or last) boot used; null before the first one. */
  currentBoot: boolean | null = null;

  constructor(
    private readonly platform: { pk: string; kek: string[] },
    initialDb: string[],
    enabled: boolean,
  ) {
    this.db = initialDb.map((pem) => ({ id: String(this.nextId++), pem }));
    this.enabled = enabled;
  }

  certificates(): readonly DbCertificate[] {
    return this.db;
  }

  /** Adds a PEM certificate to db; refuses what is not one, and one already there. */
  enroll(pem: string): DbCertificate {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch {
      throw new SecureBootError('CertificateString is not a PEM X.509 certificate', 'CertificateString');
    }
    if (this.db.some((c) => new X509Certificate(c.pem).fingerprint256 === cert.fingerprint256)) {
      throw new SecureBootError(`the certificate ${cert.subject.replace(/\n/g, ', ')} is already in db`, 'CertificateString');
    }
    const entry = { id: String(this.nextId++), pem: cert.toString() };
    this.db.push(entry);
    return entry;
  }

  remove(id: string): boolean {
    const before = this.db.length;
    this.db = this.db.filter((c) => c.id !== id);
    return this.db.length !== before;
  }

  /** At power-on: what the firmware gets, and the current boot's state. */
  forBoot(): SecureBootPlan {
    this.currentBoot = this.enabled;
    return { enabled: this.enabled, pk: this.platform.pk, kek: this.platform.kek, db: this.db.map((c) => c.pem) };
  }
}
