// Once per test run: the base artifacts every suite may use must be there (a missing one fails the run
// with what to make, rather than skipping tests), and the CLI is compiled, because process-level tests
// start `node dist/cli.js` like an operator does.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { requireBaseArtifacts, TINY_BASE_ARTIFACTS } from './prerequisites.js';

export default function setup(): void {
  requireBaseArtifacts(...TINY_BASE_ARTIFACTS);
  const repo = path.resolve(import.meta.dirname, '../..');
  execFileSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', path.join(repo, 'tsconfig.build.json')], { stdio: 'inherit' });
}
