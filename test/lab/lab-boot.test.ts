// The lab end to end, driven with plain HTTP calls the way the seed's sequence diagram drives a BMC:
// a server boots an ISO the service built from the BMC's virtual CD (streamed by Range reads), and a
// UKI by UEFI HTTP Boot that the firmware fetches itself; it gets a DHCP lease from dnsmasq and checks
// in. Power semantics: Once/Continuous overrides, a reboot from inside, the power button with a guest
// that ignores it and with the ephemeral OS, ForceOff, PowerCycle.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Bmc, consoleText, LabService, startLab, type TestLab } from '../support/lab.js';
import { b64 } from '../support/service.js';
import { requireBaseArtifacts } from '../support/prerequisites.js';

const BOOT_MS = 240_000;
requireBaseArtifacts('vmlinuz-amd64', 'initramfs-tiny-amd64.img', 'initramfs-amd64.img');

describe('lab: booting servers through their BMC', { timeout: BOOT_MS * 2 }, () => {
  let lab: TestLab;
  let bmc: Bmc;
  let svc: LabService;

  beforeAll(async () => {
    lab = await startLab({ servers: 1, bmcTimings: { powerOnDelayMs: 1500 } });
    bmc = new Bmc(lab.ns, lab.d.servers[0]!);
    svc = new LabService(lab.ns, lab.d);
  }, 60_000);

  afterAll(async () => {
    await lab?.down();
  }, 60_000);

  const dhcpAddress = (a: string) => {
    const last = Number(a.split('.')[3]);
    return a.startsWith('192.0.2.') && last >= 100 && last <= 199;
  };

  test('virtual CD: the BMC streams the ISO by Range reads, the server boots it, leases an address and checks in', async () => {
    const id = randomUUID();
    await svc.registerCheckin(id);
    const { isoUrl } = await svc.buildTiny(id);
    expect((await bmc.insert(isoUrl)).status).toBe(204);
    const media = await bmc.get(`${bmc.system}/VirtualMedia/Cd`);
    expect(media).toMatchObject({ Image: isoUrl, ImageName: 'boot.iso', Inserted: true, WriteProtected: true, ConnectedVia: 'URI' });
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    expect((await bmc.reset('On')).status).toBe(204);
    // Power takes time: the BMC reports PoweringOn before On.
    expect(await bmc.powerState()).toBe('PoweringOn');

    const addresses = await svc.waitForCheckin(id, BOOT_MS);
    expect(addresses).toHaveLength(1);
    expect(dhcpAddress(addresses[0]!)).toBe(true);
    // dnsmasq leased exactly that address to the server's provisioning MAC.
    const dhcp = fs.readFileSync(lab.d.dhcpLog, 'utf8');
    expect(dhcp).toMatch(new RegExp(`DHCPACK\\(\\S+\\) ${addresses[0]!.replace(/\./g, '\\.')} ${bmc.server.provisioningMac}`));
    // The BMC's HEAD, then the CD drive's Range reads: never one whole download.
    const reads = svc.artifactReads('/boot.iso');
    expect(reads[0]).toMatchObject({ method: 'HEAD', status: 200 });
    const ranged = reads.filter((r) => r.method === 'GET' && r.status === 206 && /^bytes=\d+-\d+$/.test(r.range ?? ''));
    expect(ranged.length).toBeGreaterThan(3);
    expect(reads.filter((r) => r.method === 'GET' && r.status === 200)).toHaveLength(0);
    // The tiny image powers off when it is done; the Once override was consumed by this boot.
    await bmc.waitForPower('Off', 60_000);
    expect((await bmc.get(bmc.system)).Boot).toMatchObject({ BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' });
    expect(bmc.logEvents('power on').at(-1)).toMatchObject({ device: 'cd', mediaUrl: isoUrl });
  });

  test('after a consumed Once the next power-on boots the disk, with the media still inserted', async () => {
    // Something bootable on the first disk (as if an OS were installed): an image with its own checkin id.
    const onDisk = randomUUID();
    await svc.registerCheckin(onDisk);
    const { isoUrl: diskIso } = await svc.buildTiny(onDisk);
    const buildId = new URL(diskIso).pathname.split('/')[2]!;
    const image = path.join(lab.d.stateDir, 'service-data/builds', buildId, 'boot.iso');
    const disk = bmc.server.disks[0]!.path;
    const fd = fs.openSync(disk, 'r+');
    try {
      fs.writeSync(fd, fs.readFileSync(image), 0, undefined, 0);
    } finally {
      fs.closeSync(fd);
    }
    const cdBoots = consoleText(bmc.server).split('UOD-CMDLINE').length;
    expect((await bmc.reset('On')).status).toBe(204);
    // The disk's image checks in; the inserted CD (first test's ISO) is not what booted.
    await svc.waitForCheckin(onDisk, BOOT_MS);
    expect(bmc.logEvents('power on').at(-1)).toMatchObject({ device: 'default' });
    const start = bmc.logEvents('qemu start').at(-1)!.args as string;
    expect(start).toMatch(/scsi-hd,[^ ]*bootindex=0/);
    expect(start).toMatch(/ide-cd,[^ ]*drive=media0,bootindex=2/);
    expect(consoleText(bmc.server).split('UOD-CMDLINE').length).toBe(cdBoots + 1);
    await bmc.waitForPower('Off', 60_000);
    // Blank the disk again for the tests that follow.
    const blank = fs.openSync(disk, 'r+');
    try {
      fs.writeSync(blank, Buffer.alloc(fs.statSync(image).size), 0, undefined, 0);
    } finally {
      fs.closeSync(blank);
    }
    expect((await bmc.eject()).status).toBe(204);
    expect(await bmc.get(`${bmc.system}/VirtualMedia/Cd`)).toMatchObject({ Image: null, Inserted: false });
  });

  test('a reboot from inside comes back, and a Continuous override holds across it', async () => {
    const id = randomUUID();
    await svc.registerCheckin(id);
    const { isoUrl } = await svc.buildTiny(id, { cmdline: 'console=ttyS0,115200 uod.timeout=90 uod.finish=reboot' });
    expect((await bmc.insert(isoUrl)).status).toBe(204);
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Continuous' })).status).toBe(204);
    const boots = bmc.logEvents('power on').length;
    expect((await bmc.reset('On')).status).toBe(204);
    await svc.waitForCheckin(id, BOOT_MS);
    await svc.registerCheckin(id);
    // The guest reboots; the BMC sees the reset (QMP SHUTDOWN guest-reset) and starts the next boot.
    await svc.waitForCheckin(id, BOOT_MS);
    expect(bmc.logEvents('machine stopped').some((e) => e.reason === 'guest-reset')).toBe(true);
    const ons = bmc.logEvents('power on').slice(boots);
    expect(ons.length).toBeGreaterThanOrEqual(2);
    expect(ons.slice(0, 2).map((e) => e.device)).toEqual(['cd', 'cd']);
    expect(await bmc.powerState()).toBe('On');
    expect((await bmc.get(bmc.system)).Boot).toMatchObject({ BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Continuous' });
    expect((await bmc.reset('ForceOff')).status).toBe(204);
    await bmc.waitForPower('Off', 30_000);
    expect((await bmc.eject()).status).toBe(204);
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'None' })).status).toBe(204);
  });

  test('UEFI HTTP Boot: the firmware itself fetches HttpBootUri (plain DHCP only) and the server checks in', async () => {
    const id = randomUUID();
    await svc.registerCheckin(id);
    const { ukiUrl } = await svc.buildTiny(id);
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once', HttpBootUri: ukiUrl })).status).toBe(204);
    expect((await bmc.get(bmc.system)).Boot.HttpBootUri).toBe(ukiUrl);
    expect((await bmc.reset('On')).status).toBe(204);
    const addresses = await svc.waitForCheckin(id, BOOT_MS);
    expect(dhcpAddress(addresses[0]!)).toBe(true);
    // OVMF's HTTP Boot: HEAD, then GET of the whole file, from the server's own address.
    const reads = svc.artifactReads('/uki.efi');
    expect(reads.map((r) => r.method)).toEqual(expect.arrayContaining(['HEAD', 'GET']));
    expect(reads.find((r) => r.method === 'GET')!.status).toBe(200);
    expect(reads.some((r) => dhcpAddress(r.remote))).toBe(true);
    // Nothing but the NVRAM told it where to go: no CD, no -kernel.
    const start = bmc.logEvents('qemu start').at(-1)!.args as string;
    expect(start).not.toMatch(/-kernel|media0/);
    await bmc.waitForPower('Off', 60_000);
    expect((await bmc.get(bmc.system)).Boot).toMatchObject({ BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' });
  });

  test('GracefulShutdown: a guest that ignores the power button stays On; ForceOff cuts power', async () => {
    const id = randomUUID();
    await svc.registerCheckin(id);
    // The tiny image loads no ACPI button driver: the power button does nothing, as on a hung OS.
    const { isoUrl } = await svc.buildTiny(id, { cmdline: 'console=ttyS0,115200 uod.timeout=90 uod.finish=stay' });
    expect((await bmc.insert(isoUrl)).status).toBe(204);
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'Cd', BootSourceOverrideEnabled: 'Once' })).status).toBe(204);
    expect((await bmc.reset('On')).status).toBe(204);
    await svc.waitForCheckin(id, BOOT_MS);
    expect((await bmc.reset('GracefulShutdown')).status).toBe(204);
    await new Promise((r) => setTimeout(r, 10_000));
    expect(await bmc.powerState()).toBe('On');
    expect((await bmc.reset('ForceOff')).status).toBe(204);
    const seen = await bmc.waitForPower('Off', 30_000);
    expect(seen[0]).toMatch(/PoweringOff|Off/);
    expect((await bmc.reset('ForceOff')).status).toBe(409);
    expect((await bmc.eject()).status).toBe(204);
  });

  test('the ephemeral OS powers off on GracefulShutdown; PowerCycle turns a running server off and on', async () => {
    const id = randomUUID();
    await svc.registerCheckin(id);
    const { ukiUrl } = await svc.build({
      kernel: 'vmlinuz-amd64',
      initramfs: 'initramfs-amd64.img',
      cmdline: 'console=ttyS0,115200',
      architecture: 'amd64',
      files: [
        { path: '/var/lib/cloud/seed/nocloud/meta-data', contentBase64: b64(`instance-id: ${id}\nlocal-hostname: lab-${id.slice(0, 8)}\n`) },
        { path: '/var/lib/cloud/seed/nocloud/user-data', contentBase64: b64('#cloud-config\n') },
        { path: '/var/lib/cloud/seed/nocloud/checkin-url', contentBase64: b64(`${lab.d.serviceUrl}/api/v1/checkins/${id}`) },
      ],
    });
    expect((await bmc.setBoot({ BootSourceOverrideTarget: 'UefiHttp', BootSourceOverrideEnabled: 'Once', HttpBootUri: ukiUrl })).status).toBe(204);
    expect((await bmc.reset('On')).status).toBe(204);
    await svc.waitForCheckin(id, BOOT_MS * 1.5);
    // systemd is up (the checkin runs after the network); the ACPI power button (button module +
    // logind) powers it off.
    const t0 = Date.now();
    expect((await bmc.reset('GracefulShutdown')).status).toBe(204);
    await bmc.waitForPower('Off', 120_000);
    expect(bmc.logEvents('machine stopped').at(-1)).toMatchObject({ reason: 'guest-shutdown' });
    console.log(`ephemeral OS: power button to Off in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // PowerCycle from Off is a power-on; from On it cuts power, waits, and powers on again.
    expect((await bmc.reset('PowerCycle')).status).toBe(204);
    await bmc.waitForPower('On', 30_000);
    const offs = bmc.logEvents('power off').length;
    const ons = bmc.logEvents('power on').length;
    expect((await bmc.reset('PowerCycle')).status).toBe(204);
    const seen = await bmc.waitForPower('On', 30_000);
    expect(seen).toEqual(expect.arrayContaining(['PoweringOn']));
    expect(bmc.logEvents('power off').length).toBe(offs + 1);
    expect(bmc.logEvents('power on').length).toBe(ons + 1);
    expect((await bmc.reset('ForceOff')).status).toBe(204);
    await bmc.waitForPower('Off', 30_000);
  });
});
