// The layer table, enforced: every import in src/ (static, re-export or dynamic, read with
// TypeScript's own pre-processor) must point down the table, and directories never import each other
// in a circle.
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../../src');

/** What each layer (a directory of src/, or a top-level module by name) may import besides itself. */
const MAY_IMPORT: Record<string, readonly string[] | 'anything'> = {
  // composition root
  cli: 'anything',
  service: 'anything',
  // the option table: parses networks and names the UKI writers
  config: ['image', 'net'],
  // HTTP adapter
  api: ['builds', 'checkins', 'catalog', 'delivery', 'image', 'metrics', 'concurrency', 'storage', 'net', 'validation'],
  // domain: builds may use the catalog, never the other way round; checkins stand alone
  builds: ['catalog', 'image', 'concurrency', 'storage', 'net', 'validation'],
  catalog: ['image', 'concurrency', 'storage', 'net', 'validation'],
  checkins: ['image', 'concurrency', 'storage', 'net', 'validation'],
  // what readers did with each build's artifacts (in memory)
  delivery: ['image'],
  // formats and tools
  image: ['concurrency', 'storage'],
  // leaves
  metrics: [],
  concurrency: [],
  storage: [],
  net: [],
  validation: [],
};

interface Import {
  from: string;
  to: string;
  specifier: string;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import of every file under src/, as paths relative to src/. */
function importsInSrc(): Import[] {
  return sourceFiles(SRC).flatMap((file) => {
    const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
    return info.importedFiles
      .map((f) => f.fileName)
      .filter((specifier) => specifier.startsWith('.'))
      .map((specifier) => ({
        from: path.relative(SRC, file),
        to: path.relative(SRC, path.resolve(path.dirname(file), specifier)).replace(/\.js$/, '.ts'),
        specifier,
      }));
  });
}

/** The layer of a path relative to src/: its first directory, or the module's name for a top-level file. */
function layerOf(relative: string): string {
  const [first, ...rest] = relative.split(path.sep);
  return rest.length > 0 ? first! : first!.replace(/\.ts$/, '');
}

/** One line per import that leaves src/, comes from or goes to a layer the table does not know, or points the wrong way. */
function layerViolations(imports: readonly Import[], table = MAY_IMPORT): string[] {
  const problems: string[] = [];
  for (const i of imports) {
    const where = `${i.from} imports '${i.specifier}'`;
    if (i.to.startsWith('..')) {
      problems.push(`${where}, outside src/`);
      continue;
    }
    const [from, to] = [layerOf(i.from), layerOf(i.to)];
    if (from === to) continue;
    const allowed = table[from];
    if (allowed === undefined) problems.push(`${where}: layer "${from}" is not in the layer table`);
    else if (table[to] === undefined) problems.push(`${where}: layer "${to}" is not in the layer table`);
    else if (allowed !== 'anything' && !allowed.includes(to)) problems.push(`${where}: ${from} may not import ${to}`);
  }
  return problems;
}

/** Every circle of imports between layers, each as "a → b → a", found by depth-first search. */
function layerCycles(imports: readonly Import[]): string[] {
  const edges = new Map<string, Set<string>>();
  for (const i of imports) {
    const [from, to] = [layerOf(i.from), layerOf(i.to)];
    if (from === to || i.to.startsWith('..')) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  const cycles = new Set<string>();
  const visit = (node: string, trail: string[]) => {
    const at = trail.indexOf(node);
    if (at >= 0) {
      // one spelling per circle: start it at its smallest layer name
      const circle = trail.slice(at);
      const start = circle.indexOf([...circle].sort()[0]!);
      const rotated = [...circle.slice(start), ...circle.slice(0, start)];
      cycles.add([...rotated, rotated[0]].join(' → '));
      return;
    }
    for (const next of edges.get(node) ?? []) visit(next, [...trail, node]);
  };
  for (const node of edges.keys()) visit(node, []);
  return [...cycles].sort();
}

describe('layers', () => {
  const imports = importsInSrc();

  test('src/ has imports to check', () => {
    // a reader that found nothing would pass everything
    expect(imports.filter((i) => i.from === 'service.ts').map((i) => layerOf(i.to))).toContain('builds');
    expect(imports.filter((i) => i.from === path.join('builds', 'registry.ts')).map((i) => i.to)).toContain(path.join('builds', 'build-store.ts'));
  });

  test('every import in src/ follows the layer table', () => {
    expect(layerViolations(imports)).toEqual([]);
  });

  test('no layer imports itself through another', () => {
    expect(layerCycles(imports)).toEqual([]);
  });

  test('the checks catch an upward import, an unknown layer, an import from outside src/ and a circle', () => {
    const bad: Import[] = [
      { from: 'catalog/base-artifacts.ts', to: 'builds/request.ts', specifier: '../builds/request.js' },
      { from: 'checkins/registry.ts', to: 'builds/registry.ts', specifier: '../builds/registry.js' },
      { from: 'image/uki.ts', to: 'metrics.ts', specifier: '../metrics.js' },
      { from: 'extra/thing.ts', to: 'net/cidr.ts', specifier: '../net/cidr.js' },
      { from: 'builds/pipeline.ts', to: '../lab/lab.ts', specifier: '../../lab/lab.js' },
      { from: 'builds/request.ts', to: 'catalog/base-artifacts.ts', specifier: '../catalog/base-artifacts.js' },
    ];
    expect(layerViolations(bad)).toEqual([
      "catalog/base-artifacts.ts imports '../builds/request.js': catalog may not import builds",
      "checkins/registry.ts imports '../builds/registry.js': checkins may not import builds",
      "image/uki.ts imports '../metrics.js': image may not import metrics",
      "extra/thing.ts imports '../net/cidr.js': layer \"extra\" is not in the layer table",
      "builds/pipeline.ts imports '../../lab/lab.js', outside src/",
    ]);
    expect(layerCycles(bad)).toEqual(['builds → catalog → builds']);
    expect(layerCycles([...bad, { from: 'service.ts', to: 'api/app.ts', specifier: './api/app.js' }, { from: 'api/app.ts', to: 'service.ts', specifier: '../service.js' }])).toEqual([
      'api → service → api',
      'builds → catalog → builds',
    ]);
  });
});
