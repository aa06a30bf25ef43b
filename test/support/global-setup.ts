// Compiles the CLI once per test run: process-level tests start `node dist/cli.js` like an operator does.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export default function setup(): void {
  const repo = path.resolve(import.meta.dirname, '../..');
  execFileSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', path.join(repo, 'tsconfig.build.json')], { stdio: 'inherit' });
}
