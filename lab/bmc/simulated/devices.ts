// A simulated server's hardware as its container sees it, made by the lab in place of firmware and
// udev: each disk file on a loop device with a node in the container's /dev, udev database entries so
// that lsblk reads the disk's serial and WWN, /dev/disk/by-id links, and the machine's DMI identity at
// /run/machine/dmi/id (hw-inventory reads it there in a container; sysfs's DMI tables are the host's).
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SimulatedDisk {
  kind: 'scsi-hd' | 'nvme' | 'virtio-blk';
  serial: string;
  wwn?: string;
  path: string;
}

export interface Identity {
  name: string;
  uuid: string;
  serialNumber: string;
}

/** Where hw-inventory looks for the machine's DMI files in a container (base-artifacts/ephemeral). */
export const CONTAINER_DMI = '/run/machine/dmi/id';

/** The by-id link names udev gives such a disk (the serial, and the WWN when it has one). */
function byIdNames(disk: SimulatedDisk): string[] {
  const model = { 'scsi-hd': 'scsi-0UOD_Simulated_Disk', nvme: 'nvme-UOD_Simulated_NVMe', 'virtio-blk': 'virtio' }[disk.kind];
  return [`${model}_${disk.serial}`, ...(disk.wwn ? [`wwn-${disk.wwn}`] : [])].map((n) => n.replace(/^virtio_/, 'virtio-'));
}

/** The loop device of a disk file (partitions scanned): the one already attached to it, or a new one. */
export async function attachDisk(path: string): Promise<string> {
  const { stdout } = await run('losetup', ['--find', '--show', '--nooverlap', '--partscan', path]);
  return stdout.trim();
}

/** Detaches every loop device backed by `path` (after power-off, and when the lab goes down). */
export async function detachDisk(path: string): Promise<void> {
  const { stdout } = await run('losetup', ['-j', path, '-O', 'NAME', '-n']).catch(() => ({ stdout: '' }));
  for (const dev of stdout.split('\n').map((l) => l.trim()).filter(Boolean)) await run('losetup', ['-d', dev]).catch(() => undefined);
}

// Discoverable Partitions: "Linux root (x86-64)", the type the target OS's root has.
const ROOT_X86_64 = '4f68bce3-e8cd-4db1-96e7-fbcaf984b709';

/** The root partition's device on the disk file `path` (attached, partitions scanned), if it has one. */
export async function rootPartition(path: string): Promise<string | undefined> {
  const dev = await attachDisk(path);
  const name = basename(dev);
  // The kernel ignores a GPT whose protective MBR does not span the disk (an image written to a larger
  // disk); a firmware reads it anyway, and so does partx, which tells the kernel its partitions.
  if (partitionsOf(name).length === 0) await run('partx', ['--add', dev]).catch(() => undefined);
  for (const part of partitionsOf(name)) {
    const { stdout } = await run('blkid', ['-p', '-s', 'PART_ENTRY_TYPE', '-o', 'value', `/dev/${part.name}`]).catch(() => ({ stdout: '' }));
    if (stdout.trim().toLowerCase() === ROOT_X86_64) return `/dev/${part.name}`;
  }
  return undefined;
}

/** The partitions the kernel sees on a block device now: name and major:minor. */
function partitionsOf(name: string): { name: string; majorMinor: string }[] {
  return readdirSync(`/sys/block/${name}`).filter((e) => e.startsWith(`${name}p`)).map((part) => ({ name: part, majorMinor: readFileSync(`/sys/block/${name}/${part}/dev`, 'utf8').trim() }));
}

/**
 * The per-boot device view under `dir`: what the container is given at start (nspawnArgs: disk nodes,
 * /run/udev/data: a database only, since no udev runs in a container, /dev/disk and the DMI identity),
 * and sync(), which does udev's part later: when the OS writes a partition table (the target OS), the
 * kernel adds partitions, and their nodes and database entries are made in the running container.
 */
export class DeviceView {
  private readonly known = new Set<string>();
  private constructor(private readonly dir: string, private readonly devices: string[], readonly nspawnArgs: string[]) {}

  static async create(dir: string, identity: Identity, disks: SimulatedDisk[]): Promise<DeviceView> {
    await rm(dir, { recursive: true, force: true });
    const byId = join(dir, 'disk/by-id');
    const dmi = join(dir, 'dmi');
    await Promise.all([mkdir(join(dir, 'udev/data'), { recursive: true }), mkdir(byId, { recursive: true }), mkdir(dmi, { recursive: true })]);
    const args: string[] = [];
    const devices: string[] = [];
    for (const disk of disks) {
      const dev = await attachDisk(disk.path);
      const name = basename(dev);
      devices.push(name);
      const majorMinor = (await readFile(`/sys/block/${name}/dev`, 'utf8')).trim();
      const model = disk.kind === 'nvme' ? 'UOD_Simulated_NVMe' : 'UOD_Simulated_Disk';
      await writeFile(join(dir, 'udev/data', `b${majorMinor}`), [
        `E:ID_SERIAL_SHORT=${disk.serial}`, `E:ID_SERIAL=${model}_${disk.serial}`, `E:ID_MODEL=${model}`,
        ...(disk.wwn ? [`E:ID_WWN=${disk.wwn}`] : []), '',
      ].join('\n'));
      for (const link of byIdNames(disk)) await symlink(`../../${name}`, join(byId, link));
      args.push(`--bind=${dev}`);
    }
    const view = new DeviceView(dir, devices, args);
    // Partitions that exist already (a disk the target OS was written to) are there from the start.
    for (const name of devices) {
      for (const part of partitionsOf(name)) {
        await view.describePartition(part);
        args.push(`--bind=/dev/${part.name}`);
      }
    }
    const files: Record<string, string> = {
      sys_vendor: 'uki-on-demand', product_name: 'Lab Server (simulated)', product_serial: identity.serialNumber, product_uuid: identity.uuid,
      board_vendor: 'uki-on-demand', board_name: 'Simulated', chassis_vendor: 'uki-on-demand', chassis_serial: identity.serialNumber,
      bios_vendor: 'uki-on-demand lab', bios_version: 'simulated (no firmware)',
    };
    for (const [file, value] of Object.entries(files)) await writeFile(join(dmi, file), `${value}\n`);
    args.push(`--bind-ro=${join(dir, 'udev/data')}:/run/udev/data`, `--bind-ro=${join(dir, 'disk')}:/dev/disk`, `--bind-ro=${dmi}:${CONTAINER_DMI}`);
    return view;
  }

  /** A partition's udev database entry: what udev's blkid builtin would record (type GUIDs, file system). */
  private async describePartition(part: { name: string; majorMinor: string }): Promise<void> {
    this.known.add(part.name);
    const { stdout } = await run('blkid', ['-p', '-o', 'export', `/dev/${part.name}`]).catch(() => ({ stdout: '' }));
    const entries = stdout.split('\n').filter((l) => l.includes('=')).map((l) => `E:ID_${l.replace(/^TYPE=/, 'FS_TYPE=').replace(/^UUID=/, 'FS_UUID=').replace(/^LABEL=/, 'FS_LABEL=')}`);
    await writeFile(join(this.dir, 'udev/data', `b${part.majorMinor}`), [...entries, ''].join('\n'));
  }

  /** Makes the nodes and entries of partitions added since, in the container whose PID 1 is `initPid`. */
  async sync(initPid: number): Promise<void> {
    for (const name of this.devices) {
      for (const part of partitionsOf(name)) {
        if (this.known.has(part.name)) continue;
        await this.describePartition(part);
        const [major, minor] = part.majorMinor.split(':') as [string, string];
        await run('mknod', [`/proc/${initPid}/root/dev/${part.name}`, 'b', major, minor]).catch(() => undefined);
      }
    }
  }
}
