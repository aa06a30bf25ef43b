// Redfish SecureBoot (DSP0268 SecureBoot, SecureBootDatabase, Certificate) over the machine's Secure
// Boot setup, in the shape Dell iDRAC9 records: the switch on Systems/{id}/SecureBoot, and db's
// certificates in SecureBootDatabases/db/Certificates, enrolled by POSTing a PEM certificate.
import { X509Certificate } from 'node:crypto';
import { SecureBootError, type SecureBootSetup } from '../machine/secure-boot.js';
import { errors, RedfishError } from './errors.js';

const link = (id: string) => ({ '@odata.id': id });
type Resource = Record<string, unknown>;

export interface SecureBootPaths {
  secureBoot: string;
  databases: string;
  db: string;
  certificates: string;
}

export function secureBootPaths(system: string): SecureBootPaths {
  const secureBoot = `${system}/SecureBoot`;
  const databases = `${secureBoot}/SecureBootDatabases`;
  return { secureBoot, databases, db: `${databases}/db`, certificates: `${databases}/db/Certificates` };
}

/** The SecureBoot resource: the recorded one (if any) with the live switch and current boot. */
export function secureBootBody(sb: SecureBootSetup, p: SecureBootPaths, recorded?: Resource, withDatabases = true): Resource {
  return {
    '@odata.id': p.secureBoot,
    '@odata.type': '#SecureBoot.v1_1_0.SecureBoot',
    Id: 'SecureBoot',
    Name: 'UEFI Secure Boot',
    ...recorded,
    SecureBootEnable: sb.enabled,
    SecureBootCurrentBoot: sb.currentBoot ? 'Enabled' : 'Disabled',
    // The platform owner's PK is enrolled: user mode (or the recording's name for it, DeployedMode).
    SecureBootMode: recorded?.SecureBootMode === 'DeployedMode' ? 'DeployedMode' : 'UserMode',
    ...(withDatabases ? { SecureBootDatabases: link(p.databases) } : {}),
  };
}

export function databasesBody(p: SecureBootPaths, recorded?: Resource): Resource {
  return recorded ?? {
    '@odata.id': p.databases, '@odata.type': '#SecureBootDatabaseCollection.SecureBootDatabaseCollection', Name: 'UEFI SecureBoot Database Collection',
    'Members@odata.count': 1, Members: [link(p.db)],
  };
}

export function dbBody(p: SecureBootPaths, recorded?: Resource): Resource {
  return recorded ?? {
    '@odata.id': p.db, '@odata.type': '#SecureBootDatabase.v1_0_1.SecureBootDatabase', Id: 'db', Name: 'db', DatabaseId: 'db',
    Certificates: link(p.certificates),
  };
}

/**
 * The db certificates collection: what the lab firmware's db holds. A recording's members (Dell's
 * four vendor certificates) are not in the lab's db, so they are not listed.
 */
export function certificatesBody(sb: SecureBootSetup, p: SecureBootPaths, recorded?: Resource): Resource {
  const members = sb.certificates().map((c) => link(`${p.certificates}/${c.id}`));
  return {
    '@odata.id': p.certificates, '@odata.type': '#CertificateCollection.CertificateCollection', Name: 'Certificate Collection',
    ...recorded,
    'Members@odata.count': members.length,
    Members: members,
  };
}

export function certificateBody(sb: SecureBootSetup, p: SecureBootPaths, id: string): Resource | undefined {
  const entry = sb.certificates().find((c) => c.id === id);
  if (!entry) return undefined;
  const cert = new X509Certificate(entry.pem);
  return {
    '@odata.id': `${p.certificates}/${id}`, '@odata.type': '#Certificate.v1_5_0.Certificate', Id: id, Name: `db certificate ${id}`,
    CertificateString: entry.pem, CertificateType: 'PEM',
    Subject: { CommonName: /CN=([^\n,]+)/.exec(cert.subject)?.[1] ?? '' },
    Issuer: { CommonName: /CN=([^\n,]+)/.exec(cert.issuer)?.[1] ?? '' },
    ValidNotBefore: new Date(cert.validFrom).toISOString(),
    ValidNotAfter: new Date(cert.validTo).toISOString(),
    SerialNumber: cert.serialNumber,
    Fingerprint: cert.fingerprint256.replace(/:/g, ''),
    FingerprintHashAlgorithm: 'TPM_ALG_SHA256',
  };
}

/** PATCH SecureBoot: SecureBootEnable only (it takes effect at the next boot). */
export function patchSecureBoot(sb: SecureBootSetup, body: Resource, current: Resource): void {
  for (const key of Object.keys(body)) {
    if (key === 'SecureBootEnable' || key.startsWith('@odata.')) continue;
    throw Object.hasOwn(current, key) ? errors.propertyNotWritable(key) : errors.propertyUnknown(key);
  }
  if (body.SecureBootEnable === undefined) return;
  if (typeof body.SecureBootEnable !== 'boolean') throw errors.propertyValueType('SecureBootEnable', 'boolean');
  sb.enabled = body.SecureBootEnable;
}

/** POST a certificate to db: { CertificateString: PEM, CertificateType: "PEM" }; its new id. */
export function postCertificate(sb: SecureBootSetup, body: Resource): string {
  for (const key of Object.keys(body)) if (!['CertificateString', 'CertificateType', 'UefiSignatureOwner'].includes(key)) throw errors.propertyUnknown(key);
  if (typeof body.CertificateString !== 'string') throw errors.propertyValueType('CertificateString', 'string (a PEM certificate)');
  if (body.CertificateType !== undefined && body.CertificateType !== 'PEM') throw errors.propertyValueNotInList('CertificateType', body.CertificateType, ['PEM']);
  try {
    return sb.enroll(body.CertificateString).id;
  } catch (err) {
    if (err instanceof SecureBootError) throw new RedfishError(err.message.includes('already') ? 409 : 400, err.message.includes('already') ? 'Base.1.15.ResourceAlreadyExists' : 'Base.1.15.PropertyValueFormatError', err.message, [`#/${err.property}`]);
    throw err;
  }
}
