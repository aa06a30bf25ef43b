// The PCR 11 prediction, computed from the build's inputs, against systemd-measure's over the UKI's sections.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { predictPcr11 } from '../../src/image/pcr11.js';
import { assembleUki } from '../../src/image/uki.js';
import { systemdMeasure as measure } from '../support/pcr11.js';
import { BASE_ARTIFACTS } from '../support/service.js';

const PHASES = [[], ['sysinit'], ['sysinit', 'ready']];
const systemdMeasure = (uki: string) => measure(uki, PHASES.map((p) => p.join(':')));

describe('PCR 11 prediction', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uod-pcr11-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function build(tag: string, overlay: string, writer: 'direct' | 'objcopy') {
    const outPath = join(dir, `${tag}.efi`);
    const written = await assembleUki({
      arch: 'amd64',
      kernelPath: join(BASE_ARTIFACTS, 'vmlinuz-amd64'),
      initrd: { basePath: join(BASE_ARTIFACTS, 'initramfs-tiny-amd64.img'), overlay: Buffer.from(overlay) },
      cmdline: `console=ttyS0 ${tag}`,
      osRelease: `ID=uki-on-demand\nIMAGE_ID=${tag}\n`,
      outPath,
      workDir: dir,
      writer,
      measure: true,
    });
    return { outPath, predicted: predictPcr11(written.measuredSections!, PHASES) };
  }

  it('equals systemd-measure for two builds of one base (the second from the cached base state) and either writer', async () => {
    const a = await build('first', 'overlay one', 'direct');
    const b = await build('second', 'overlay two', 'direct');
    const c = await build('third', 'overlay two', 'objcopy');
    expect(a.predicted.map((p) => p.phase)).toEqual(['', 'sysinit', 'sysinit:ready']);
    expect(a.predicted).toEqual(await systemdMeasure(a.outPath));
    expect(b.predicted).toEqual(await systemdMeasure(b.outPath));
    expect(c.predicted).toEqual(await systemdMeasure(c.outPath));
    expect(new Set([...a.predicted, ...b.predicted].map((p) => p.sha256)).size).toBe(6);
  });
});
