// A simulated server's hardware as its container sees it, made by the lab in place of firmware and
// udev: each disk file on a loop device with a node in the container's /dev, udev database entries so
// that lsblk reads the disk's serial and WWN, /dev/disk/by-id links, and the machine's DMI identity at
// /run/machine/dmi/id (hw-inventory reads it there in a container; sysfs's DMI tables are the host's).
import { execFile } from 'node:child_process';
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

/** The loop device of a disk file: the one already attached to it, or a new one. */
export async function attachDisk(path: string): Promise<string> {
  const { stdout } = await run('losetup', ['--find', '--show', '--nooverlap', path]);
  return stdout.trim();
}

/** Detaches every loop device backed by `path` (after power-off, and when the lab goes down). */
export async function detachDisk(path: string): Promise<void> {
  const { stdout } = await run('losetup', ['-j', path, '-O', 'NAME', '-n']).catch(() => ({ stdout: '' }));
  for (const dev of stdout.split('\n').map((l) => l.trim()).filter(Boolean)) await run('losetup', ['-d', dev]).catch(() => undefined);
}

/**
 * Writes the per-boot device view under `dir` and returns the systemd-nspawn options that give it to
 * the container: disk nodes, /run/udev (database only: no udev runs in a container), /dev/disk and
 * the DMI identity.
 */
export async function deviceView(dir: string, identity: Identity, disks: SimulatedDisk[]): Promise<string[]> {
  await rm(dir, { recursive: true, force: true });
  const udevData = join(dir, 'udev/data');
  const byId = join(dir, 'disk/by-id');
  const dmi = join(dir, 'dmi');
  await Promise.all([mkdir(udevData, { recursive: true }), mkdir(byId, { recursive: true }), mkdir(dmi, { recursive: true })]);
  const args: string[] = [];
  for (const disk of disks) {
    const dev = await attachDisk(disk.path);
    const name = basename(dev);
    const majorMinor = (await readFile(`/sys/block/${name}/dev`, 'utf8')).trim();
    const model = disk.kind === 'nvme' ? 'UOD Simulated NVMe' : 'UOD Simulated Disk';
    await writeFile(join(udevData, `b${majorMinor}`), [
      `E:ID_SERIAL_SHORT=${disk.serial}`, `E:ID_SERIAL=${model.replace(/ /g, '_')}_${disk.serial}`, `E:ID_MODEL=${model.replace(/ /g, '_')}`,
      ...(disk.wwn ? [`E:ID_WWN=${disk.wwn}`] : []), '',
    ].join('\n'));
    for (const link of byIdNames(disk)) await symlink(`../../${name}`, join(byId, link));
    args.push(`--bind=${dev}`);
  }
  const files: Record<string, string> = {
    sys_vendor: 'uki-on-demand', product_name: 'Lab Server (simulated)', product_serial: identity.serialNumber, product_uuid: identity.uuid,
    board_vendor: 'uki-on-demand', board_name: 'Simulated', chassis_vendor: 'uki-on-demand', chassis_serial: identity.serialNumber,
    bios_vendor: 'uki-on-demand lab', bios_version: 'simulated (no firmware)',
  };
  for (const [file, value] of Object.entries(files)) await writeFile(join(dmi, file), `${value}\n`);
  args.push(`--bind-ro=${join(dir, 'udev')}:/run/udev`, `--bind-ro=${join(dir, 'disk')}:/dev/disk`, `--bind-ro=${dmi}:${CONTAINER_DMI}`);
  return args;
}
