// The machine behind a BMC, chosen by its configuration: QEMU today. Another kind of machine (libvirt,
// a real server's power and media through its own BMC) is another driver here; nothing else changes.
import { join } from 'node:path';
import type { BmcConfig } from './config.js';
import type { MachineDriver } from './machine/types.js';
import { qmpSocket } from './qemu/command-line.js';
import { QemuDriver, type DriverLog } from './qemu/driver.js';

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
  }
}
