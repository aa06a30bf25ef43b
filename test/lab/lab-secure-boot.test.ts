// A lab server whose firmware enforces Secure Boot (LAB_SECURE_BOOT): PK and KEK of the lab's platform
// key, db holding only a key the lab made, and the service signing with a key of its own. The signed
// UKI is refused until the service's certificate is enrolled through the BMC's Redfish db; then it
// boots by UEFI HTTP boot to a checkin with SecureBootCurrentBoot Enabled, and the signed ISO boots
// from the virtual CD to a checkin too. Same firmware and NVRAM throughout. The server has a TPM: each of
// the two builds leaves in PCR 11 exactly what the service predicted (the tiny init prints it).
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import path from 'node:path';
import { TARGET_IMAGE_CERT } from '../../lab/plan.js';
import { Bmc, consoleText, LabService, startLab, until, type TestLab } from '../support/lab.js';
import { REPO } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

const BOOT_MS = 240_000;
requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img');

describe('lab: a server with Secure Boot enforced', { timeout: BOOT_MS * 3 }, () => {
  let lab: TestLab;
  let bmc: Bmc;
  let svc: LabService;

  beforeAll(async () => {
    lab = await startLab({ servers: 1, secureBootServers: ['server1'], tpmServers: ['server1'] });
    bmc = new Bmc(lab.ns, lab.d.servers[0]!);
    svc = new LabService(lab.ns, lab.d);
  }, 120_000);

  afterAll(async () => {
    await lab?.down();
  }, 60_000);

  /** The tiny init has no boot phases: PCR 11 holds the stub's measurements alone (phase ""). */
  const stubOnly = (pcr11: { phase: string; sha256: string }[]) => pcr11.find((p) => p.phase === '')?.sha256;
  /** PCR 11 as the booted kernel read it from the swtpm, printed on the console since `from`. */
  const pcr11Read = (from: number) => /^UOD-PCR11: ([0-9a-f]{64})$/m.exec(consoleText(bmc.server).slice(from))?.[1];

  test('refused before the service\'s certificate is enrolled, then the UKI by HTTP boot and the ISO by virtual CD each reach a checkin', async () => {
    const sbPath = `${bmc.system}/SecureBoot`;
    expect(await bmc.get(sbPath)).toMatchObject({ SecureBootEnable: true });
    const certs = `${sbPath}/SecureBootDatabases/db/Certificates`;
    // The lab's own key, and the installed OS's vendor key when the target image is signed: not the service's.
    const signedTarget = fs.existsSync(path.join(REPO, 'base-artifacts/out', TARGET_IMAGE_CERT));
    expect((await bmc.get(certs))['Members@odata.count']).toBe(signedTarget ? 2 : 1);

    // 1. Not enrolled: the firmware refuses the service's signed UKI.
    const first = randomUUID();
    await svc.registerCheckin(first);
    const { ukiUrl, pcr11: predictedFirst } = await svc.buildTiny(first);
    expect((await bmc.setBoot({ HttpBootUri: ukiUrl, BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    const consoleFrom = consoleText(bmc.server).length;
    expect((await bmc.reset('On')).status).toBe(204);
    await until('the firmware\'s refusal on the console', BOOT_MS, async () =>
      (/failed to load Boot0100 .*: (Access Denied|Security Violation)/.test(consoleText(bmc.server).slice(consoleFrom)) ? true : undefined), 1_000);
    expect((await bmc.reset('ForceOff')).status).toBe(204);
    await bmc.waitForPower('Off', 60_000);

    // 2. Enrolled through Redfish (the shape Dell records); the same UKI now boots to a checkin.
    const posted = await bmc.request('POST', certs, { CertificateString: fs.readFileSync(lab.d.serviceSecureBootCert!, 'utf8'), CertificateType: 'PEM' });
    expect(posted.status).toBe(201);
    expect((await bmc.setBoot({ HttpBootUri: ukiUrl, BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    await new Promise((r) => setTimeout(r, 9_000)); // a BMC refuses On for a moment after power-off on some models; here just settle
    const enrolledFrom = consoleText(bmc.server).length;
    expect((await bmc.reset('On')).status).toBe(204);
    expect((await svc.waitForCheckin(first, BOOT_MS)).length).toBe(1);
    expect(pcr11Read(enrolledFrom)).toBe(stubOnly(predictedFirst));
    expect(await bmc.get(sbPath)).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: 'Enabled' });
    await bmc.waitForPower('Off', 90_000);

    // 3. The signed ISO from the virtual CD: its EFI image is the signed UKI.
    const second = randomUUID();
    await svc.registerCheckin(second);
    const { isoUrl, pcr11: predictedSecond } = await svc.buildTiny(second);
    expect(stubOnly(predictedSecond)).not.toBe(stubOnly(predictedFirst));
    const cdFrom = consoleText(bmc.server).length;
    expect((await bmc.insert(isoUrl)).status).toBe(204);
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    expect((await bmc.reset('On')).status).toBe(204);
    expect((await svc.waitForCheckin(second, BOOT_MS)).length).toBe(1);
    expect(pcr11Read(cdFrom)).toBe(stubOnly(predictedSecond));
    expect(bmc.logEvents('power on').at(-1)).toMatchObject({ device: 'cd', secureBoot: { enabled: true } });
  });
});
