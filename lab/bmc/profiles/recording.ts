// A Redfish-Mockup-Creator recording (one index.json per resource path under redfish/v1) read into
// memory: the resource tree a profiled BMC serves. Paths are matched without case and trailing slash,
// as iLO does (it links /redfish/v1/systems/1/bios/ from /redfish/v1/Systems/1).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

export type Resource = Record<string, unknown>;

export function pathKey(path: string): string {
  return path.split('?')[0]!.replace(/\/+$/, '').toLowerCase();
}

export class Recording {
  private readonly resources = new Map<string, Resource>();

  constructor(readonly dir: string) {
    const root = join(dir, 'redfish', 'v1');
    if (!existsSync(join(root, 'index.json'))) throw new Error(`${dir}: not a Redfish recording (no redfish/v1/index.json)`);
    const walk = (d: string) => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (name === 'index.json') {
          const path = '/' + relative(dir, d).split(sep).join('/');
          try {
            this.resources.set(pathKey(path), JSON.parse(readFileSync(p, 'utf8')) as Resource);
          } catch (err) {
            throw new Error(`${p}: ${(err as Error).message}`);
          }
        }
      }
    };
    walk(root);
  }

  /** A copy of the recorded resource (the caller overlays live state on it), or undefined. */
  get(path: string): Resource | undefined {
    const r = this.resources.get(pathKey(path));
    return r === undefined ? undefined : (structuredClone(r) as Resource);
  }

  has(path: string): boolean {
    return this.resources.has(pathKey(path));
  }

  /** Whether the BMC's ETags are weak (W/"..."), as the recorded @odata.etag values show; strong without any. */
  weakEtags(): boolean {
    for (const r of this.resources.values()) {
      const tag = r['@odata.etag'];
      if (typeof tag === 'string') return tag.startsWith('W/');
    }
    return false;
  }

  /** The @odata.id links of a recorded collection's members. */
  members(path: string): string[] {
    const c = this.get(path);
    return ((c?.Members as { '@odata.id': string }[] | undefined) ?? []).map((m) => m['@odata.id']);
  }

  /** The first member of a collection, which must be recorded. */
  first(collection: string, what: string): string {
    const path = this.members(collection)[0];
    if (!path || !this.has(path)) throw new Error(`${this.dir}: the recording has no ${what} (${collection} lists none that is recorded)`);
    return path;
  }
}

/** A property by its path of keys ('Boot', 'BootSourceOverrideTarget'), or undefined. */
export function dig(resource: unknown, ...keys: string[]): unknown {
  let v: unknown = resource;
  for (const k of keys) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

export function linkOf(resource: unknown, ...keys: string[]): string | undefined {
  const v = dig(resource, ...keys, '@odata.id');
  return typeof v === 'string' ? v : undefined;
}
