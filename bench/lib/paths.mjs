// Where the benchmark lives and writes: everything generated goes under bench/work/ (git-ignored).
import path from 'node:path';

export const BENCH = path.resolve(import.meta.dirname, '..');
export const REPO = path.resolve(BENCH, '..');
export const WORK = path.join(BENCH, 'work');
export const BASE_DIR = path.join(WORK, 'base');
export const KERNEL_SOURCE = path.join(REPO, 'base-artifacts', 'out', 'vmlinuz-amd64');
