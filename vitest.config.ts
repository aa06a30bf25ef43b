import { defineConfig } from 'vitest/config';

// Suites are chosen by directory: `unit` and `api` are fast, `e2e` boots QEMU,
// `reliability` tries to break a running service. See the Makefile targets.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['test/support/global-setup.ts'],
  },
});
