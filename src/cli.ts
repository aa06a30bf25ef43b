#!/usr/bin/env node
// Command line entry point: `uki-on-demand serve [options]`. Bad options stop start-up with one line
// naming the option; SIGTERM/SIGINT shut down gracefully (running builds resume at the next start).
import { ConfigError, helpText, loadConfig } from './config.js';
import { startService } from './service.js';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(helpText() + '\n');
    return command === undefined ? 2 : 0;
  }
  if (command !== 'serve') {
    process.stderr.write(`uki-on-demand: unknown command "${command}" (expected "serve"; see --help)\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(helpText() + '\n');
    return 0;
  }
  let config;
  try {
    config = loadConfig(rest, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`uki-on-demand: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Listened for before starting, so that a signal during start-up also ends in a graceful stop.
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  const service = await startService(config);
  await stopRequested;
  await service.close();
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`uki-on-demand: ${err.message}\n`);
    process.exit(1);
  },
);
