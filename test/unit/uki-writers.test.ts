// The in-process PE writer (--uki-writer direct) must produce what objcopy produces: the same sections
// at the same addresses with the same sizes, flags and bytes, and the same image-wide header fields.
// (The files differ only in trailing padding: the direct writer pads the last section to FileAlignment.)
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { assembleUki } from '../../src/image/uki.js';
import { readPe } from '../../src/image/pe.js';
import { archTools } from '../../src/image/tools.js';
import { BASE_ARTIFACTS } from '../support/service.js';

// The global setup has checked that both kernels and tiny images exist.
const cases = ['amd64', 'arm64'] as const;

describe('UKI writers agree', () => {
  for (const arch of cases) {
    it(`${arch}: direct and objcopy give identical section contents and layout`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'uod-writers-'));
      const common = {
        arch,
        kernelPath: join(BASE_ARTIFACTS, `vmlinuz-${arch}`),
        initrd: { basePath: join(BASE_ARTIFACTS, `initramfs-tiny-${arch}.img`), overlay: Buffer.from('overlay bytes') },
        cmdline: 'console=ttyS0 writers',
        osRelease: 'ID=uki-on-demand\n',
        workDir: dir,
        digest: true,
      };
      const a = await assembleUki({ ...common, outPath: join(dir, 'direct.efi'), writer: 'direct' });
      const b = await assembleUki({ ...common, outPath: join(dir, 'objcopy.efi'), writer: 'objcopy' });
      expect(a.sha256).toBe(createHash('sha256').update(readFileSync(join(dir, 'direct.efi'))).digest('hex'));

      const [pa, pb] = [await readPe(join(dir, 'direct.efi')), await readPe(join(dir, 'objcopy.efi'))];
      const layout = (pe: typeof pa) => pe.sections.map((s) => [s.name, s.virtualAddress, s.virtualSize, s.characteristics]);
      expect(layout(pa)).toEqual(layout(pb));
      expect([pa.machine, pa.sizeOfImage, pa.sectionAlignment]).toEqual([pb.machine, pb.sizeOfImage, pb.sectionAlignment]);

      for (const name of ['.sbat', '.osrel', '.cmdline', '.initrd', '.linux']) {
        const dump = async (file: string) => {
          const out = join(dir, `${file}${name}`);
          await execa(archTools(arch).objcopy, ['--dump-section', `${name}=${out}`, join(dir, file), join(dir, 'discard')]);
          return readFileSync(out);
        };
        expect((await dump('direct.efi')).equals(await dump('objcopy.efi')), name).toBe(true);
      }
      expect(b.bytes).toBeGreaterThan(0);
    }, 60_000);
  }
});
