// The QEMU command line of one virtual server for one boot: q35 + OVMF with the server's own NVRAM,
// NICs with fixed MACs and PCI slots on tap devices, disks with serials/WWNs, an SMBIOS serial, a CD
// drive streaming the inserted image over HTTP (QEMU's curl driver: Range reads, no download), the
// serial console appended to a file, a QMP socket. The boot plan decides the bootindex order.
import { join } from 'node:path';
import type { BootPlan } from '../machine/types.js';
import { tpmArgs, type TpmHardware } from './tpm.js';

export interface Nic {
  mac: string;
  /** tap device on one of the lab's bridges */
  tap: string;
  /** PCI slot (device number) on the root bus; the HttpBootUri device path names it */
  pciSlot: number;
}

export interface Disk {
  kind: 'scsi-hd' | 'nvme' | 'virtio-blk';
  serial: string;
  wwn?: string;
  /** raw, sparse image file */
  path: string;
  sizeGiB: number;
}

export interface Hardware {
  name: string;
  uuid: string;
  serialNumber: string;
  memoryMiB: number;
  cpus: number;
  accel: 'tcg' | 'kvm';
  firmwareCode: string;
  nvram: string;
  console: string;
  qmpSocket: string;
  /** The firmware is OVMF's Secure Boot build (SMM on, secure flash). */
  secureBoot?: boolean;
  /** A TPM 2.0 (swtpm), which the firmware and systemd-stub measure into. */
  tpm?: TpmHardware;
  nics: Nic[];
  disks: Disk[];
}

export const CD_DEVICE_ID = 'cd0';
export const MEDIA_NODE = 'media0';

/** The -blockdev of an HTTP(S)-streamed, read-only CD image (certificates not checked, as on BMCs). */
export function mediaBlockdev(url: string, nodeName = MEDIA_NODE): Record<string, unknown> {
  const https = url.startsWith('https:');
  const file: Record<string, unknown> = { driver: https ? 'https' : 'http', url, timeout: 60, readahead: 1 << 20 };
  if (https) file.sslverify = false;
  return { driver: 'raw', 'node-name': nodeName, 'read-only': true, file };
}

/** The QMP socket of a server in its BMC's state directory. */
export function qmpSocket(stateDir: string): string {
  return join(stateDir, 'qmp.sock');
}

/** The QEMU netdev of the server's i-th NIC (QMP set_link takes this name). */
export function netdevId(i: number): string {
  return `net${i}`;
}

export function qemuArgs(hw: Hardware, plan: BootPlan): string[] {
  // Boot order: the planned device first, then disks, the CD, the network.
  const order: string[] = [];
  if (plan.device === 'cd') order.push('cd');
  if (plan.device === 'http') order.push('net');
  order.push(...hw.disks.map((_, i) => `disk${i}`), 'cd', 'net');
  const bootindex = (dev: string) => order.indexOf(dev);

  const args = [
    '-name', `guest=${hw.name}`,
    // OVMF's Secure Boot build keeps its variables behind SMM, on a flash only SMM may write.
    '-machine', `q35,accel=${hw.accel}${hw.secureBoot ? ',smm=on' : ''}`,
    ...(hw.secureBoot ? ['-global', 'driver=cfi.pflash01,property=secure,value=on'] : []),
    '-smp', String(hw.cpus),
    '-m', String(hw.memoryMiB),
    '-uuid', hw.uuid,
    '-smbios', `type=1,manufacturer=uki-on-demand,product=Lab Server,serial=${hw.serialNumber},uuid=${hw.uuid}`,
    '-nodefaults', '-display', 'none',
    // A reboot from inside ends this QEMU; the BMC sees why (QMP SHUTDOWN reason) and starts the next boot.
    '-no-reboot',
    '-drive', `if=pflash,format=raw,readonly=on,file=${hw.firmwareCode}`,
    '-drive', `if=pflash,format=raw,file=${hw.nvram}`,
    '-chardev', `file,id=console,path=${hw.console},append=on`,
    '-serial', 'chardev:console',
    '-qmp', `unix:${hw.qmpSocket},server=on,wait=off`,
    ...(hw.tpm ? tpmArgs(hw.tpm) : []),
  ];
  // NICs first: they have fixed PCI slots, and QEMU hands out free slots in command-line order.
  hw.nics.forEach((nic, i) => {
    args.push('-netdev', `tap,id=${netdevId(i)},ifname=${nic.tap},script=no,downscript=no`);
    // romfile= (empty): the firmware's own network stack, no iPXE, as on a server's UEFI.
    const boot = i === 0 ? `,bootindex=${bootindex('net')}` : '';
    args.push('-device', `virtio-net-pci,netdev=${netdevId(i)},mac=${nic.mac},addr=0x${nic.pciSlot.toString(16)},romfile=${boot}`);
  });
  if (hw.disks.some((d) => d.kind === 'scsi-hd')) args.push('-device', 'virtio-scsi-pci,id=scsi0');
  hw.disks.forEach((disk, i) => {
    args.push('-drive', `if=none,id=disk${i},format=raw,file=${disk.path},cache=writeback,discard=unmap`);
    const common = `drive=disk${i},serial=${disk.serial},bootindex=${bootindex(`disk${i}`)}`;
    if (disk.kind === 'scsi-hd') args.push('-device', `scsi-hd,bus=scsi0.0,${common}${disk.wwn ? `,wwn=${disk.wwn}` : ''}`);
    else if (disk.kind === 'nvme') args.push('-device', `nvme,${common}`);
    else args.push('-device', `virtio-blk-pci,${common}`);
  });
  // The CD drive always exists (its tray may be empty), like a BMC's virtual CD on the USB bus.
  if (plan.mediaUrl) {
    args.push('-blockdev', JSON.stringify(mediaBlockdev(plan.mediaUrl)));
    args.push('-device', `ide-cd,bus=ide.2,id=${CD_DEVICE_ID},drive=${MEDIA_NODE},bootindex=${bootindex('cd')}`);
  } else {
    args.push('-device', `ide-cd,bus=ide.2,id=${CD_DEVICE_ID},bootindex=${bootindex('cd')}`);
  }
  return args;
}
