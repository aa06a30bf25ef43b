// The option table: defaults, every environment variable, flags over variables, refusals, and the
// README's Options table against what `--help` prints.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, describeConfig, helpText, loadConfig, OPTIONS, type OptionKey } from '../../src/config.js';
import { CLI, REPO } from '../support/service-process.mjs';

const DEFAULTS: Record<OptionKey, string | null> = {
  listen: '127.0.0.1:8080',
  tlsListen: null,
  tlsCert: null,
  tlsKey: null,
  publicUrl: null,
  publicTlsUrl: null,
  dataDir: path.resolve('data'),
  baseArtifacts: path.resolve('base-artifacts/out'),
  trustedCidrs: '127.0.0.0/8,::1/128',
  buildConcurrency: String(os.availableParallelism()),
  queueSize: '64',
  maxBodyBytes: '16777216',
  maxFiles: '1024',
  ukiWriter: 'direct',
  secureBootKey: null,
  secureBootCert: null,
  logLevel: 'info',
};

const TLS_FLAGS = ['--tls-listen', '127.0.0.1:8443', '--tls-cert', '/etc/uod/cert.pem', '--tls-key', '/etc/uod/key.pem'];

/**
 * Per option: two valid values other than the default (`a` through the environment, `b` through the
 * flag), each with the value the configuration then holds, and the flags the option needs beside it.
 */
const SAMPLES: Record<OptionKey, { a: [string, string]; b: [string, string]; needs?: string[] }> = {
  listen: { a: ['[::1]:9000', '[::1]:9000'], b: ['0.0.0.0:0', '0.0.0.0:0'] },
  tlsListen: { a: ['[::]:8443', '[::]:8443'], b: ['127.0.0.1:0', '127.0.0.1:0'], needs: ['--tls-cert', 'c.pem', '--tls-key', 'k.pem'] },
  tlsCert: { a: ['/a/cert.pem', '/a/cert.pem'], b: ['b.pem', 'b.pem'], needs: ['--tls-listen', '127.0.0.1:8443', '--tls-key', 'k.pem'] },
  tlsKey: { a: ['/a/key.pem', '/a/key.pem'], b: ['b.pem', 'b.pem'], needs: ['--tls-listen', '127.0.0.1:8443', '--tls-cert', 'c.pem'] },
  publicUrl: { a: ['http://192.0.2.5:8080/', 'http://192.0.2.5:8080'], b: ['https://uod.example/base', 'https://uod.example/base'] },
  publicTlsUrl: { a: ['https://192.0.2.5:8443', 'https://192.0.2.5:8443'], b: ['http://plain.example', 'http://plain.example'], needs: TLS_FLAGS },
  dataDir: { a: ['/srv/uod', '/srv/uod'], b: ['rel/data', path.resolve('rel/data')] },
  baseArtifacts: { a: ['/srv/base', '/srv/base'], b: ['rel/base', path.resolve('rel/base')] },
  trustedCidrs: { a: ['10.0.0.0/24, 2001:db8::/32', '10.0.0.0/24,2001:db8::/32'], b: ['192.0.2.7', '192.0.2.7/32'] },
  buildConcurrency: { a: ['1000', '1000'], b: ['1024', '1024'] },
  queueSize: { a: ['1', '1'], b: ['1000000', '1000000'] },
  maxBodyBytes: { a: ['4096', '4096'], b: ['1073741824', '1073741824'] },
  maxFiles: { a: ['7', '7'], b: ['1000000', '1000000'] },
  ukiWriter: { a: ['objcopy', 'objcopy'], b: ['direct', 'direct'] },
  secureBootKey: { a: ['/a/sb.key', '/a/sb.key'], b: ['b.key', 'b.key'], needs: ['--secure-boot-cert', 'c.pem'] },
  secureBootCert: { a: ['/a/sb.pem', '/a/sb.pem'], b: ['b.pem', 'b.pem'], needs: ['--secure-boot-key', 'k.key'] },
  logLevel: { a: ['silent', 'silent'], b: ['trace', 'trace'] },
};

const KEYS = Object.keys(OPTIONS) as OptionKey[];

function described(argv: string[], env: NodeJS.ProcessEnv): Record<OptionKey, string | null> {
  return describeConfig(loadConfig(argv, env));
}

/** The defaults, with what the flags `needs` set (each as typed) and with `key` holding `value`. */
function defaultsWith(needs: string[] = [], key: OptionKey, value: string): Record<OptionKey, string | null> {
  const expected = { ...DEFAULTS };
  for (let i = 0; i < needs.length; i += 2) {
    const needed = KEYS.find((k) => OPTIONS[k].flag === needs[i]) as OptionKey;
    expected[needed] = needs[i + 1] as string;
  }
  expected[key] = value;
  return expected;
}

describe('configuration', () => {
  test('the tests cover every option', () => {
    expect(Object.keys(DEFAULTS)).toEqual(KEYS);
    expect(Object.keys(SAMPLES)).toEqual(KEYS);
  });

  test('defaults', () => {
    expect(described([], {})).toEqual(DEFAULTS);
    const c = loadConfig([], {});
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.trustedCidrs.map((x) => x.text)).toEqual(['127.0.0.0/8', '::1/128']);
    expect(c.queueSize).toBe(64);
  });

  test.each(KEYS)('%s is read from its environment variable, and changes nothing else', (key) => {
    const { a, needs } = SAMPLES[key];
    expect(a[1]).not.toBe(DEFAULTS[key]);
    expect(described(needs ?? [], { [OPTIONS[key].env]: a[0] })).toEqual(defaultsWith(needs, key, a[1]));
  });

  test.each(KEYS)('%s: the flag wins over the environment variable, in both spellings', (key) => {
    const { a, b, needs } = SAMPLES[key];
    const env = { [OPTIONS[key].env]: a[0] };
    expect(described([...(needs ?? []), OPTIONS[key].flag, b[0]], env)[key]).toBe(b[1]);
    expect(described([...(needs ?? []), `${OPTIONS[key].flag}=${b[0]}`], env)[key]).toBe(b[1]);
  });

  test('an empty environment variable counts as unset', () => {
    expect(described([], { UOD_QUEUE_SIZE: '', UOD_LISTEN: '' })).toEqual(DEFAULTS);
  });

  test('parsed values have their types', () => {
    const c = loadConfig(['--listen', '[::1]:9000', '--max-files', '7'], { UOD_TRUSTED_CIDRS: '192.0.2.0/24' });
    expect(c.listen).toEqual({ host: '::1', port: 9000 });
    expect(c.maxFiles).toBe(7);
    expect(c.trustedCidrs).toEqual([{ text: '192.0.2.0/24', family: 4, first: 0xc0000200n, last: 0xc00002ffn }]);
  });

  test.each([
    [['--listen', 'nope'], /^--listen: expected HOST:PORT/],
    [['--listen', '127.0.0.1:65536'], /^--listen: expected HOST:PORT/],
    [['--queue-size', '0'], /^--queue-size: expected an integer from 1 to 1000000, got "0"$/],
    [['--build-concurrency', 'x'], /^--build-concurrency: /],
    [['--trusted-cidrs', '10.0.0.0/99'], /^--trusted-cidrs: /],
    [['--public-url', 'ftp://x'], /^--public-url: expected an http:\/\/ or https:\/\/ URL/],
    [['--public-url', 'http://x/?a=1'], /^--public-url: must not carry a query or fragment/],
    [['--uki-writer', 'auto'], /^--uki-writer: expected one of objcopy, direct, got "auto"$/],
    [['--log-level', 'loud'], /^--log-level: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"$/],
    [['--data-dir', ''], /^--data-dir: must not be empty$/],
    [['--tls-listen', '127.0.0.1:8443'], /^--tls-listen, --tls-cert and --tls-key must be given together$/],
    [['--public-tls-url', 'https://x'], /^--public-tls-url: needs a TLS listener \(--tls-listen\)$/],
    [['--bogus', '1'], /^unknown option "--bogus" \(see --help\)$/],
    [['--queue-size'], /^--queue-size: missing value$/],
  ])('%j is refused naming the option', (argv, re) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(re);
  });

  test('a bad environment value names the variable', () => {
    expect(() => loadConfig([], { UOD_QUEUE_SIZE: '-1' })).toThrow(/^UOD_QUEUE_SIZE: expected an integer/);
    expect(() => loadConfig([], { UOD_UKI_WRITER: 'fast' })).toThrow(/^UOD_UKI_WRITER: expected one of objcopy, direct/);
  });

  test('help lists every option with its variable', () => {
    const text = helpText();
    for (const o of Object.values(OPTIONS)) expect(text).toMatch(new RegExp(`^  ${o.flag} .*\\n {37}env ${o.env}$`, 'm'));
  });
});

interface OptionRow {
  option: string;
  env: string;
  default: string;
}

/** The rows of README.md's "## Options" table: flag with its argument, variable, default ("none": no default). */
function readmeOptions(): OptionRow[] {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Options\n'));
  const table = section.slice(0, section.indexOf('\n## ', 1)).split('\n').filter((l) => l.startsWith('| `--'));
  const plain = (cell: string) => cell.trim().replace(/^`(.*)`$/, '$1').replace(/\\\|/g, '|');
  return table.map((line) => {
    const cells = line.split(/(?<!\\)\|/).slice(1, -1);
    return { option: plain(cells[0] ?? ''), env: plain(cells[1] ?? ''), default: plain(cells[2] ?? '') };
  });
}

/** The options `node dist/cli.js serve --help` prints, in the same shape. */
function helpOptions(): OptionRow[] {
  const lines = execFileSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' }).split('\n');
  const rows: OptionRow[] = [];
  lines.forEach((line, i) => {
    const m = /^ {2}(--[a-z-]+ \S+) +(.*?)(?: \[default: (.*)\])?$/.exec(line);
    const env = /^ +env (UOD_[A-Z_]+)$/.exec(lines[i + 1] ?? '');
    if (m && env) rows.push({ option: m[1] as string, env: env[1] as string, default: m[3] ?? 'none' });
  });
  return rows;
}

describe('README Options table', () => {
  test('lists exactly the options --help prints, in the same order, with the same variables and defaults', () => {
    const help = helpOptions();
    expect(help).toHaveLength(KEYS.length);
    expect(readmeOptions()).toEqual(help);
  });
});
