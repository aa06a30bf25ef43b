// The machine behind a BMC, chosen by its configuration: QEMU, or a simulated server (systemd-nspawn).
// Another kind of machine (libvirt, a real server's power and media through its own BMC) is another
// driver here; nothing else changes.
import { join } from 'node:path';
import type { BmcConfig } from './config.js';
import type { MachineDriver } from './machine/types.js';
import { qmpSocket } from './qemu/command-line.js';
import { QemuDriver, type DriverLog } from './qemu/driver.js';
import { NspawnDriver } from './simulated/driver.js';

export function createDriver(cfg: BmcConfig, nvram: string, log: DriverLog): MachineDriver {
  switch (cfg.hardware.driver) {
    case 'qemu':
      return new QemuDriver({
        ...cfg.hardware,
        secureBoot: cfg.hardware.secureBoot !== undefined,
        tpm: cfg.hardware.tpm ? { stateDir: join(cfg.stateDir, 'tpm') } : undefined,
        nvram,
        qmpSocket: qmpSocket(cfg.stateDir),
      }, log);
    case 'nspawn': {
      const sim = cfg.hardware.simulated!;
      const { name, uuid, serialNumber, console, nics, disks } = cfg.hardware;
      return new NspawnDriver({
        name, uuid, serialNumber, console, disks,
        nics: nics.map(({ mac, tap }) => ({ mac, tap })),
        netns: sim.netns,
        stateDir: cfg.stateDir,
        base: sim.base,
        linkMbps: sim.linkMbps,
      }, log);
    }
  }
}
