// The drivers of the ephemeral OS, read from the built image (no boot): base-artifacts/out/initramfs-amd64.img
// is unpacked the way the kernel sees it (zstd, then newc cpio), and every module named in the driver
// table of base-artifacts/ephemeral/README.md must be there with everything modprobe loads before it
// (resolved by modprobe on the image's own modules.dep) and every firmware file modinfo says it asks
// for, unless that row documents the file as not packaged by Debian. The other way round, every PCI
// network or storage driver in the image must have a row, so the table stays the list of what is there.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, test } from 'vitest';
import { requireBaseArtifacts, requireTool } from '../support/prerequisites.js';
import { BASE_ARTIFACTS, REPO, tempDir } from '../support/service.js';

const run = promisify(execFile);
const README = path.join(REPO, 'base-artifacts/ephemeral/README.md');
const IMAGE = path.join(BASE_ARTIFACTS, 'initramfs-amd64.img');
// Where drivers of hardware live in the kernel tree: a module there with a PCI alias drives a NIC,
// a storage controller or a disk, and must be in the table.
const DRIVER_DIRS = /^kernel\/drivers\/(net|scsi|nvme|ata|block|message)\//;

interface Row {
  modules: string[];
  kind: string;
  hardware: string;
  firmwareGlobs: string[];
  notPackaged: string[];
}

/** The rows of the README's driver table: | `module` (`more`) | kind | hardware | firmware |. */
function driverTable(markdown: string): Row[] {
  const section = markdown.split(/^## /m).find((s) => s.startsWith('Kernel modules and firmware'));
  if (!section) throw new Error(`${README}: no "## Kernel modules and firmware" section`);
  const ticks = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  const rows: Row[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length !== 4 || !cells[0]!.startsWith('`')) continue;
    const [modules, kind, hardware, firmware] = cells as [string, string, string, string];
    const [present, absent = ''] = firmware.split(/not packaged by Debian/);
    rows.push({ modules: ticks(modules), kind, hardware, firmwareGlobs: ticks(present!), notPackaged: ticks(absent) });
  }
  return rows;
}

const globRe = (glob: string): RegExp =>
  new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);

requireBaseArtifacts('initramfs-amd64.img');

describe('ephemeral image: the README driver table against the image', () => {
  let root: string;
  let kver: string;
  let modulesDir: string;
  let firmware: string[];
  let rows: Row[];
  // module name (as modprobe spells it, '-' → '_') → path relative to the module directory
  const byName = new Map<string, string>();

  beforeAll(async () => {
    requireTool('zstd', 'zstd');
    requireTool('cpio', 'cpio');
    requireTool('modprobe', 'kmod');
    root = tempDir('ephemeral-image');
    // Only the module tree and the firmware: the rest of the 300 MB root is not needed here.
    await run('sh', ['-c', 'zstd -dc "$1" | (cd "$2" && cpio -idm --quiet --no-absolute-filenames "usr/lib/modules/*" "usr/lib/firmware/*")', 'sh', IMAGE, root],
      { maxBuffer: 16 << 20 });
    const versions = fs.readdirSync(path.join(root, 'usr/lib/modules'));
    expect(versions).toHaveLength(1);
    kver = versions[0]!;
    modulesDir = path.join(root, 'usr/lib/modules', kver);
    for (const line of fs.readFileSync(path.join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
      const file = line.split(':')[0]!;
      if (file) byName.set(path.basename(file).replace(/\.ko(\.[a-z]+)?$/, '').replace(/-/g, '_'), file);
    }
    const fwRoot = path.join(root, 'usr/lib/firmware');
    firmware = fs.existsSync(fwRoot) ? (fs.readdirSync(fwRoot, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(fwRoot, f)).isFile()) : [];
    rows = driverTable(fs.readFileSync(README, 'utf8'));
  }, 180_000);

  test('the table names the NIC and storage drivers the image is for, and bonding and 802.1Q', () => {
    const named = rows.flatMap((r) => r.modules);
    for (const m of ['ice', 'i40e', 'ixgbe', 'mlx5_core', 'bnxt_en', 'sfc', 'cxgb4', 'be2net', 'hpsa', 'smartpqi', 'aacraid', 'megaraid_sas', 'mpt3sas', 'nvme', 'bonding', '8021q']) {
      expect(named, `README driver table has no row for ${m}`).toContain(m);
    }
    expect(new Set(rows.map((r) => r.kind))).toEqual(new Set(['NIC', 'storage', 'network']));
    for (const r of rows) expect(r.hardware.length, `row ${r.modules.join(', ')} says what hardware it covers`).toBeGreaterThan(3);
  });

  test('every module of the table is in the image, with every module modprobe loads before it', async () => {
    for (const row of rows) {
      for (const name of row.modules) {
        expect(byName.has(name.replace(/-/g, '_')), `${name} (README) is not in the image's modules.dep`).toBe(true);
        // modprobe resolves the chain from the image's own index, as it does in the booted system;
        // it fails on a missing module and each insmod line names a file that must exist.
        const { stdout } = await run('modprobe', ['-d', path.join(root, 'usr'), '-S', kver, '--show-depends', name]);
        const files = stdout.split('\n').filter((l) => l.startsWith('insmod ')).map((l) => l.split(' ')[1]!);
        expect(files.length, `modprobe --show-depends ${name}`).toBeGreaterThan(0);
        for (const f of files) expect(fs.existsSync(f), `${name} needs ${f}`).toBe(true);
      }
    }
  });

  test('every firmware file a table module names (modinfo -F firmware) is in the image or documented as not packaged', async () => {
    const problems: string[] = [];
    for (const row of rows) {
      for (const name of row.modules) {
        const file = byName.get(name.replace(/-/g, '_'));
        if (!file) {
          problems.push(`${name}: not in the image`);
          continue;
        }
        const { stdout } = await run('modinfo', ['-F', 'firmware', path.join(modulesDir, file)]);
        for (const fw of stdout.split('\n').filter(Boolean)) {
          const present = firmware.includes(fw);
          if (!present && !row.notPackaged.includes(fw)) problems.push(`${name}: ${fw} is neither in the image nor documented as not packaged by Debian`);
          if (present && row.notPackaged.includes(fw)) problems.push(`${name}: ${fw} is documented as not packaged but is in the image`);
        }
      }
      // what the firmware column says is in the image (including files no module names, e.g. ice's DDP package)
      for (const glob of row.firmwareGlobs) {
        if (!firmware.some((f) => globRe(glob).test(f))) problems.push(`${row.modules[0]}: README lists ${glob}, not in the image`);
      }
    }
    expect(problems).toEqual([]);
    // ice without its DDP package runs in safe mode: this one is checked by name as well.
    expect(firmware).toContain('intel/ice/ddp/ice.pkg');
  });

  test('every PCI network and storage driver in the image has a row in the table', async () => {
    const named = new Set(rows.flatMap((r) => r.modules).map((m) => m.replace(/-/g, '_')));
    const candidates = [...byName].filter(([, file]) => DRIVER_DIRS.test(file));
    const pciDrivers: string[] = [];
    const missing: string[] = [];
    for (const [name, file] of candidates) {
      const { stdout } = await run('modinfo', ['-F', 'alias', path.join(modulesDir, file)]);
      if (!/^pci:/m.test(stdout)) continue;
      pciDrivers.push(name);
      if (!named.has(name)) missing.push(`${name} (${file})`);
    }
    // An empty scan (no modules.dep entries, a kernel tree laid out differently from DRIVER_DIRS, an
    // alias format modinfo no longer prints) would find nothing missing: the scan must first find
    // drivers known to be in the image, from every directory it looks in.
    expect(candidates.length, 'modules under DRIVER_DIRS').toBeGreaterThanOrEqual(20);
    for (const m of ['e1000e', 'igb', 'ixgbe', 'i40e', 'ice', 'mlx5_core', 'bnxt_en', 'tg3', 'nvme', 'ahci', 'ata_piix', 'megaraid_sas', 'mpt3sas', 'smartpqi']) {
      expect(pciDrivers, `the scan of the image finds the PCI driver ${m}`).toContain(m);
    }
    expect(missing).toEqual([]);
  });
});
