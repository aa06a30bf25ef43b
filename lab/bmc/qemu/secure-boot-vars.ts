// A firmware variable store with Secure Boot on: PK, KEK and db enrolled from X.509 certificates, as
// a server's owner enrolls them once. Written offline into the store (the firmware checks signatures
// on SetVariable at run time, not on what its flash already holds), like virt-firmware does.
import { X509Certificate } from 'node:crypto';
import { EFI_GLOBAL_VARIABLE, setVariables } from './nvram.js';

export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
// OVMF's own switch (SecureBootConfigDxe): with PK enrolled, 1 makes the firmware enforce.
const SECURE_BOOT_ENABLE_DISABLE = 'f0a30bc7-af08-4556-99c4-001009c93a44';
// NV | BS | RT | TIME_BASED_AUTHENTICATED_WRITE_ACCESS: what the firmware itself gives these variables.
const AUTHENTICATED = 0x01 | 0x02 | 0x04 | 0x20;
const NV_BS = 0x01 | 0x02;
/** Who enrolled an entry (EFI_SIGNATURE_DATA.SignatureOwner): this lab. */
export const LAB_OWNER = '5f3a1e2c-7b4d-4e8a-9c1f-0d2b3a4c5e6f';

function guidBytes(guid: string): Buffer {
  const h = guid.replace(/-/g, '');
  const b = Buffer.from(h, 'hex');
  // The first three fields little-endian, as EFI_GUID is laid out.
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** One EFI_SIGNATURE_LIST of X.509 certificates (one list per certificate: their sizes differ). */
export function x509SignatureLists(pems: string[], owner = LAB_OWNER): Buffer {
  return Buffer.concat(
    pems.map((pem) => {
      const der = new X509Certificate(pem).raw;
      const signatureSize = 16 + der.length;
      const head = Buffer.alloc(28);
      guidBytes(EFI_CERT_X509).copy(head, 0);
      head.writeUInt32LE(28 + signatureSize, 16); // SignatureListSize
      head.writeUInt32LE(0, 20); // SignatureHeaderSize
      head.writeUInt32LE(signatureSize, 24); // SignatureSize
      return Buffer.concat([head, guidBytes(owner), der]);
    }),
  );
}

export interface SecureBootKeys {
  /** PEM certificates */
  pk: string;
  kek: string[];
  db: string[];
}

/** Enrolls PK, KEK and db and turns enforcement on (or, `enabled` false, off), in a copy of OVMF_VARS. */
export async function enrollSecureBootKeys(varsFile: string, keys: SecureBootKeys, enabled = true): Promise<void> {
  await setVariables(varsFile, [
    { name: 'db', guid: EFI_IMAGE_SECURITY_DATABASE, attributes: AUTHENTICATED, data: x509SignatureLists(keys.db) },
    { name: 'KEK', guid: EFI_GLOBAL_VARIABLE, attributes: AUTHENTICATED, data: x509SignatureLists(keys.kek) },
    { name: 'PK', guid: EFI_GLOBAL_VARIABLE, attributes: AUTHENTICATED, data: x509SignatureLists([keys.pk]) },
    { name: 'SecureBootEnable', guid: SECURE_BOOT_ENABLE_DISABLE, attributes: NV_BS, data: Buffer.from([enabled ? 1 : 0]) },
  ]);
}
