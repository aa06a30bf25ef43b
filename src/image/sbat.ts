// The UKI's .sbat section: the stub's own SBAT entries and one line naming this project's builds, as
// systemd's ukify merges them, so that a revocation (shim's SbatLevel) can name either.

/** The entry every .sbat starts with: the version of the SBAT format itself. */
const SBAT_FORMAT_LINE = 'sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md';

/**
 * The security generation of these builds. Raise it when what a UKI of this service carries needs a
 * security fix: an SbatLevel of `uki-on-demand,<new generation>` then revokes every earlier build.
 */
export const SBAT_GENERATION = 1;

/** component, generation, vendor, package, version, URL (the SBAT.md fields). */
export const SBAT_LINE = `uki-on-demand,${SBAT_GENERATION},uki-on-demand,uki-on-demand,${SBAT_GENERATION},https://uki-on-demand.invalid/sbat`;

/** What the stub's own `.sbat` section is renamed to, so that a UKI has exactly one `.sbat` (shim refuses two). */
export const STUB_SBAT_RENAMED = '.sdsbat';

/**
 * The merged .sbat text: the stub's lines (from its `.sbat` section, NUL padding dropped), then this
 * project's line. A stub without one gets the format line first.
 */
export function mergeSbat(stubSbat: Buffer | null): Buffer {
  const stubText = stubSbat === null ? '' : stubSbat.toString('utf8').replace(/\0+$/, '');
  const lines = stubText.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) lines.push(SBAT_FORMAT_LINE);
  else if (!lines[0]!.startsWith('sbat,')) throw new Error('the stub\'s .sbat does not start with the "sbat," format line');
  if (lines.some((line) => line.split(',')[0] === 'uki-on-demand')) throw new Error('the stub\'s .sbat already names uki-on-demand');
  return Buffer.from(`${[...lines, SBAT_LINE].join('\n')}\n`, 'utf8');
}
