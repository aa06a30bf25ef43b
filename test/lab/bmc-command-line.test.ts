// The QEMU command line of a virtual server: boot order per plan, fixed NIC slots, disk identities,
// the streamed CD, and the options the BMC's stop detection relies on.
import { describe, expect, test } from 'vitest';
import { CD_DEVICE_ID, MEDIA_NODE, netdevId, qemuArgs, qmpSocket, type Hardware } from '../../lab/bmc/qemu/command-line.js';
import type { BootPlan } from '../../lab/bmc/machine/types.js';

const HW: Hardware = {
  name: 'server-1',
  uuid: '0b9c3a52-7c38-4c1e-9a55-0e5f1f6c1a01',
  serialNumber: 'LAB0001',
  memoryMiB: 2048,
  cpus: 2,
  accel: 'tcg',
  firmwareCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  nvram: '/var/lib/bmc/nvram.fd',
  console: '/var/log/lab/server-1.console',
  qmpSocket: '/var/lib/bmc/qmp.sock',
  nics: [
    { mac: '52:54:00:00:01:01', tap: 'tap-s1-a', pciSlot: 3 },
    { mac: '52:54:00:00:01:02', tap: 'tap-s1-b', pciSlot: 4 },
  ],
  disks: [
    { kind: 'scsi-hd', serial: 'DISK0SER', wwn: '0x5000c500a1b2c3d4', path: '/var/lib/bmc/disk0.raw', sizeGiB: 8 },
    { kind: 'nvme', serial: 'NVME1SER', path: '/var/lib/bmc/disk1.raw', sizeGiB: 4 },
    { kind: 'virtio-blk', serial: 'VBLK2SER', path: '/var/lib/bmc/disk2.raw', sizeGiB: 4 },
  ],
};
const ISO = 'http://10.0.2.2:8080/artifacts/abc/boot.iso';

/** The values of every occurrence of an option. */
function values(args: string[], option: string): string[] {
  return args.flatMap((a, i) => (a === option && args[i + 1] !== undefined ? [args[i + 1]!] : []));
}

/** -device strings as { driver, props }, in command-line order. */
function devices(args: string[]) {
  return values(args, '-device').map((d) => {
    const [driver, ...rest] = d.split(',');
    const props = new Map(rest.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const));
    return { driver: driver!, props, raw: d };
  });
}

/** bootindex → device name (NICs by MAC, disks by serial, the CD by id). */
function bootOrder(args: string[]): string[] {
  const named = devices(args)
    .filter((d) => d.props.has('bootindex'))
    .map((d) => ({ index: Number(d.props.get('bootindex')), name: d.props.get('mac') ?? d.props.get('serial') ?? d.props.get('id')! }));
  const indexes = named.map((n) => n.index);
  expect(new Set(indexes).size, 'bootindex values are unique').toBe(indexes.length);
  return named.sort((a, b) => a.index - b.index).map((n) => n.name);
}

describe('boot order', () => {
  test.each<[string, BootPlan, string[]]>([
    ['default', { device: 'default' }, ['DISK0SER', 'NVME1SER', 'VBLK2SER', CD_DEVICE_ID, '52:54:00:00:01:01']],
    ['default with media', { device: 'default', mediaUrl: ISO }, ['DISK0SER', 'NVME1SER', 'VBLK2SER', CD_DEVICE_ID, '52:54:00:00:01:01']],
    ['hdd', { device: 'hdd', mediaUrl: ISO }, ['DISK0SER', 'NVME1SER', 'VBLK2SER', CD_DEVICE_ID, '52:54:00:00:01:01']],
    ['cd', { device: 'cd', mediaUrl: ISO }, [CD_DEVICE_ID, 'DISK0SER', 'NVME1SER', 'VBLK2SER', '52:54:00:00:01:01']],
    ['http', { device: 'http', httpBootUri: 'http://10.0.2.2:8080/uki.efi' }, ['52:54:00:00:01:01', 'DISK0SER', 'NVME1SER', 'VBLK2SER', CD_DEVICE_ID]],
  ])('%s', (_, plan, order) => {
    const args = qemuArgs(HW, plan);
    expect(bootOrder(args)).toEqual(order);
    const first = devices(args).find((d) => d.props.get('bootindex') === '0');
    expect(first).toBeDefined();
  });

  test('without disks, the CD and the network still get an order', () => {
    expect(bootOrder(qemuArgs({ ...HW, disks: [] }, { device: 'hdd' }))).toEqual([CD_DEVICE_ID, '52:54:00:00:01:01']);
  });
});

describe('devices', () => {
  test('NICs keep their fixed slots, have no option ROM, and come before other PCI devices', () => {
    for (const plan of [{ device: 'default' }, { device: 'http', httpBootUri: 'http://x/uki.efi' }] as BootPlan[]) {
      const devs = devices(qemuArgs(HW, plan));
      const nics = devs.filter((d) => d.driver === 'virtio-net-pci');
      expect(nics.map((n) => [n.props.get('mac'), n.props.get('addr'), n.props.get('netdev')])).toEqual([
        ['52:54:00:00:01:01', '0x3', 'net0'],
        ['52:54:00:00:01:02', '0x4', 'net1'],
      ]);
      for (const n of nics) expect(n.props.get('romfile')).toBe('');
      expect(nics[1]!.props.has('bootindex')).toBe(false);
      const lastNic = devs.lastIndexOf(nics[1]!);
      const firstOther = devs.findIndex((d) => d.driver !== 'virtio-net-pci');
      expect(lastNic).toBeLessThan(firstOther);
      expect(devs.findIndex((d) => d.driver === 'virtio-net-pci')).toBe(0);
    }
    const args = qemuArgs(HW, { device: 'default' });
    expect(values(args, '-netdev')).toEqual([
      'tap,id=net0,ifname=tap-s1-a,script=no,downscript=no',
      'tap,id=net1,ifname=tap-s1-b,script=no,downscript=no',
    ]);
  });

  test('disks carry their serials, the SCSI disk its WWN', () => {
    const args = qemuArgs(HW, { device: 'default' });
    const devs = devices(args);
    const scsi = devs.find((d) => d.driver === 'scsi-hd')!;
    expect(scsi.props.get('serial')).toBe('DISK0SER');
    expect(scsi.props.get('wwn')).toBe('0x5000c500a1b2c3d4');
    expect(scsi.props.get('bus')).toBe('scsi0.0');
    expect(devs.some((d) => d.driver === 'virtio-scsi-pci' && d.props.get('id') === 'scsi0')).toBe(true);
    expect(devs.find((d) => d.driver === 'nvme')!.props.get('serial')).toBe('NVME1SER');
    expect(devs.find((d) => d.driver === 'virtio-blk-pci')!.props.get('serial')).toBe('VBLK2SER');
    const drives = values(args, '-drive').filter((d) => d.startsWith('if=none'));
    expect(drives).toHaveLength(3);
    expect(drives[0]).toContain('file=/var/lib/bmc/disk0.raw');
    expect(drives[0]).toContain('format=raw');
  });

  test('no SCSI controller without SCSI disks', () => {
    const args = qemuArgs({ ...HW, disks: [HW.disks[1]!] }, { device: 'default' });
    expect(devices(args).some((d) => d.driver === 'virtio-scsi-pci')).toBe(false);
  });

  test('the CD drive always exists; its http blockdev only with media', () => {
    const empty = qemuArgs(HW, { device: 'default' });
    expect(values(empty, '-blockdev')).toEqual([]);
    const emptyCd = devices(empty).find((d) => d.driver === 'ide-cd')!;
    expect(emptyCd.props.get('id')).toBe(CD_DEVICE_ID);
    expect(emptyCd.props.has('drive')).toBe(false);

    const full = qemuArgs(HW, { device: 'cd', mediaUrl: ISO });
    const blockdevs = values(full, '-blockdev').map((b) => JSON.parse(b) as Record<string, any>);
    expect(blockdevs).toHaveLength(1);
    expect(blockdevs[0]).toMatchObject({ driver: 'raw', 'node-name': MEDIA_NODE, 'read-only': true, file: { driver: 'http', url: ISO } });
    expect(blockdevs[0]!.file.sslverify).toBeUndefined();
    const cd = devices(full).find((d) => d.driver === 'ide-cd')!;
    expect(cd.props.get('drive')).toBe(MEDIA_NODE);
  });

  test('https media are not certificate-checked', () => {
    const url = 'https://10.0.2.2:8443/artifacts/abc/boot.iso';
    const [blockdev] = values(qemuArgs(HW, { device: 'default', mediaUrl: url }), '-blockdev');
    expect(JSON.parse(blockdev!)).toMatchObject({ file: { driver: 'https', url, sslverify: false } });
  });
});

describe('machine options', () => {
  const args = qemuArgs(HW, { device: 'default' });

  test('-no-reboot turns a guest reboot into an exit the BMC sees', () => {
    expect(args).toContain('-no-reboot');
  });

  test('the console appends to its file, the QMP socket does not wait', () => {
    const chardev = values(args, '-chardev');
    expect(chardev).toEqual([`file,id=console,path=${HW.console},append=on`]);
    expect(values(args, '-serial')).toEqual(['chardev:console']);
    expect(values(args, '-qmp')).toEqual([`unix:${HW.qmpSocket},server=on,wait=off`]);
  });

  test('one QMP monitor, the BMC\'s (cables go through its driver too); netdevs named for set_link', () => {
    expect(qmpSocket('/var/lib/bmc')).toBe('/var/lib/bmc/qmp.sock');
    expect(values(args, '-qmp')).toEqual([`unix:${HW.qmpSocket},server=on,wait=off`]);
    expect(values(args, '-netdev').map((n) => n.split(',')[1])).toEqual([`id=${netdevId(0)}`, `id=${netdevId(1)}`]);
  });

  test('firmware code read-only, the server\'s own NVRAM writable', () => {
    expect(values(args, '-drive').filter((d) => d.startsWith('if=pflash'))).toEqual([
      `if=pflash,format=raw,readonly=on,file=${HW.firmwareCode}`,
      `if=pflash,format=raw,file=${HW.nvram}`,
    ]);
  });

  test('identity: UUID, SMBIOS serial, memory and CPUs', () => {
    expect(values(args, '-uuid')).toEqual([HW.uuid]);
    expect(values(args, '-smbios')[0]).toContain(`serial=${HW.serialNumber}`);
    expect(values(args, '-m')).toEqual(['2048']);
    expect(values(args, '-smp')).toEqual(['2']);
    expect(values(args, '-machine')).toEqual(['q35,accel=tcg']);
    expect(args).toContain('-nodefaults');
  });
});
