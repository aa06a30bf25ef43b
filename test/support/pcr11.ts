// systemd's own PCR 11 calculation for a UKI: systemd-measure over the sections binutils extracts from it,
// each padded to its VirtualSize as the firmware loads it. The reference the service's prediction must equal.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { readPe } from '../../src/image/pe.js';
import { archTools } from '../../src/image/tools.js';

const SYSTEMD_MEASURE = '/usr/lib/systemd/systemd-measure';

export async function systemdMeasure(uki: string, phases: string[]): Promise<Array<{ phase: string; sha256: string }>> {
  const dir = mkdtempSync(join(tmpdir(), 'uod-measure-'));
  try {
    const pe = await readPe(uki);
    const args: string[] = [];
    for (const name of ['.linux', '.osrel', '.cmdline', '.initrd']) {
      const file = join(dir, `section${name}`);
      await execa(archTools('amd64').objcopy, ['--dump-section', `${name}=${file}`, uki, join(dir, 'discard')]);
      const section = pe.sections.find((s) => s.name === name)!;
      const loaded = Buffer.alloc(section.virtualSize);
      readFileSync(file).copy(loaded, 0, 0, section.virtualSize);
      writeFileSync(file, loaded);
      args.push(`--${name.slice(1)}=${file}`);
    }
    const { stdout } = await execa(SYSTEMD_MEASURE, ['calculate', ...args, '--bank=sha256', ...phases.map((p) => `--phase=${p}`), '--json=short']);
    return (JSON.parse(stdout) as { sha256: Array<{ phase?: string; hash: string }> }).sha256.map((e) => ({ phase: e.phase ?? '', sha256: e.hash }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
