// The virtual BMC's configuration file: one server, its BMC endpoint and credentials, its hardware
// and its quirk profile. The lab writes one per server; a bad file stops start-up naming the field.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { isQuirk, QUIRKS, type Quirk } from './machine/quirks.js';

const mac = z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'a lower-case MAC address like 52:54:00:12:34:56');

export const bmcConfigSchema = z.strictObject({
  /** HOST:PORT of the HTTPS listener */
  listen: z.string().regex(/^[0-9.]+:\d+$/, 'an IPv4 HOST:PORT'),
  username: z.string().min(1),
  password: z.string().min(1),
  systemId: z.string().regex(/^[A-Za-z0-9._-]+$/),
  /** directory for the certificate, NVRAM and QMP socket */
  stateDir: z.string().min(1),
  /** A BMC profile (lab/bmc/profiles): standard, dell, hpe, lenovo, or a directory with a recording. */
  profile: z.string().min(1).default('standard'),
  quirks: z.array(z.string().refine(isQuirk, { message: `one of ${Object.keys(QUIRKS).join(', ')}` })).default([]),
  timings: z.strictObject({
    powerOnDelayMs: z.number().int().min(0).optional(),
    powerCycleOffMs: z.number().int().min(0).optional(),
    ejectLagMs: z.number().int().min(0).optional(),
    postMs: z.number().int().min(0).optional(),
  }).default({}),
  logLevel: z.string().default('info'),
  hardware: z.strictObject({
    /** What runs the server (lab/bmc/driver-factory.ts). */
    driver: z.enum(['qemu', 'nspawn']).default('qemu'),
    /** driver nspawn (a simulated server, lab/bmc/simulated): its network namespace, link speed and base root. */
    simulated: z.strictObject({
      netns: z.string().regex(/^[A-Za-z0-9._-]+$/),
      linkMbps: z.number().min(0),
      base: z.strictObject({ initramfs: z.string().min(1), size: z.number().int().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/), lowerDir: z.string().min(1) }),
    }).optional(),
    name: z.string().min(1),
    uuid: z.uuid(),
    serialNumber: z.string().regex(/^[A-Za-z0-9._-]+$/),
    memoryMiB: z.number().int().min(256),
    cpus: z.number().int().min(1).max(64),
    accel: z.enum(['tcg', 'kvm']),
    firmwareCode: z.string().min(1),
    firmwareVarsTemplate: z.string().min(1),
    /**
     * A Secure Boot firmware (firmwareCode its secboot build): the platform owner's certificate (PK
     * and KEK), the certificates db starts with, and whether it enforces at first.
     */
    secureBoot: z.strictObject({ platformCert: z.string().min(1), dbCerts: z.array(z.string().min(1)), enabled: z.boolean() }).optional(),
    /** A TPM 2.0 (swtpm) whose state lives in the BMC's state directory. */
    tpm: z.boolean().default(false),
    console: z.string().min(1),
    nics: z.array(z.strictObject({ mac, tap: z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/), pciSlot: z.number().int().min(2).max(31) })).min(1),
    disks: z.array(z.strictObject({
      kind: z.enum(['scsi-hd', 'nvme', 'virtio-blk']),
      serial: z.string().regex(/^[A-Za-z0-9._-]{1,20}$/),
      wwn: z.string().regex(/^0x[0-9a-f]{16}$/).optional(),
      path: z.string().min(1),
      sizeGiB: z.number().int().min(1),
    })),
  }),
});

export type BmcConfig = z.infer<typeof bmcConfigSchema> & { quirks: Quirk[] };

function checkDriver(cfg: z.infer<typeof bmcConfigSchema>): string | undefined {
  const hw = cfg.hardware;
  if (hw.driver === 'nspawn' && !hw.simulated) return 'hardware.simulated: required with driver nspawn';
  if (hw.driver === 'qemu' && hw.simulated) return 'hardware.simulated: only with driver nspawn';
  if (hw.driver === 'nspawn' && (hw.secureBoot || hw.tpm)) return 'hardware: a simulated server (driver nspawn) has no firmware: no secureBoot, no tpm';
  return undefined;
}

export function loadBmcConfig(file: string): BmcConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  const parsed = bmcConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const wrong = checkDriver(parsed.data);
  if (wrong) throw new Error(`${file}: ${wrong}`);
  return parsed.data as BmcConfig;
}
