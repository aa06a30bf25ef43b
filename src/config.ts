// Service configuration: one table declares every option once (flag, env var, default, help, parser),
// and the Config type is inferred from the table's parsers. Flags win over the environment, the
// environment over defaults.
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_UKI_WRITER, UKI_WRITERS } from './image/uki.js';
import { parseCidrList } from './net/cidr.js';

interface HostPort {
  host: string;
  port: number;
}

export class ConfigError extends Error {}

interface Option<T, D extends string | null> {
  flag: `--${string}`;
  env: `UOD_${string}`;
  /** The value's placeholder in --help, e.g. HOST:PORT. */
  arg: string;
  help: string;
  /** The default as the user would type it; null: unset unless given (the value is then null). */
  default: D;
  /** How --help describes a default that is not a fixed value, e.g. "CPU count". */
  defaultText?: string;
  // Methods, not function properties: every option then fits the AnyOption view used to walk the table.
  parse(raw: string): T;
  /** The value as the user would type it, for the start-up log; String() when absent. */
  format?(value: T): string;
}

type AnyOption = Option<unknown, string | null>;

function option<T, D extends string | null>(spec: Option<T, D>): Option<T, D> {
  return spec;
}

function parseHostPort(raw: string): HostPort {
  // IPv6 literals come bracketed ("[::1]:8080") so the last colon is unambiguous.
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(raw);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 0 || port > 65535) throw new ConfigError(`expected HOST:PORT (IPv6 as [ADDR]:PORT), got "${raw}"`);
  return { host: (m[1] ?? m[2]) as string, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function positiveInt(max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
      throw new ConfigError(`expected an integer from 1 to ${max}, got "${raw}"`);
    }
    return Number(raw);
  };
}

function httpUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`expected an absolute http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`expected an http:// or https:// URL, got "${raw}"`);
  }
  if (url.search || url.hash) throw new ConfigError(`must not carry a query or fragment: "${raw}"`);
  return url.toString().replace(/\/+$/, '');
}

function nonEmpty(raw: string): string {
  if (raw === '') throw new ConfigError('must not be empty');
  return raw;
}

function directory(raw: string): string {
  return path.resolve(nonEmpty(raw));
}

function oneOf<const V extends string>(values: readonly V[]) {
  return (raw: string): V => {
    const found = values.find((v) => v === raw);
    if (found === undefined) throw new ConfigError(`expected one of ${values.join(', ')}, got "${raw}"`);
    return found;
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const hostPort = { parse: parseHostPort, format: formatHostPort };

export const OPTIONS = {
  listen: option({ flag: '--listen', env: 'UOD_LISTEN', arg: 'HOST:PORT', default: '127.0.0.1:8080',
    help: 'plain HTTP listener', ...hostPort }),
  tlsListen: option({ flag: '--tls-listen', env: 'UOD_TLS_LISTEN', arg: 'HOST:PORT', default: null,
    help: 'HTTPS listener (needs --tls-cert and --tls-key)', ...hostPort }),
  tlsCert: option({ flag: '--tls-cert', env: 'UOD_TLS_CERT', arg: 'FILE', default: null,
    help: 'PEM certificate chain for the HTTPS listener', parse: nonEmpty }),
  tlsKey: option({ flag: '--tls-key', env: 'UOD_TLS_KEY', arg: 'FILE', default: null,
    help: 'PEM private key for the HTTPS listener', parse: nonEmpty }),
  publicUrl: option({ flag: '--public-url', env: 'UOD_PUBLIC_URL', arg: 'URL', default: null, defaultText: 'http://<listen>',
    help: 'base of the URLs handed out (statusUrl, artifact URLs); the default names the address the listener bound', parse: httpUrl }),
  publicTlsUrl: option({ flag: '--public-tls-url', env: 'UOD_PUBLIC_TLS_URL', arg: 'URL', default: null, defaultText: 'https://<tls-listen>',
    help: 'base of artifact URLs for tlsArtifacts builds; the default names the address the TLS listener bound', parse: httpUrl }),
  dataDir: option({ flag: '--data-dir', env: 'UOD_DATA_DIR', arg: 'DIR', default: './data',
    help: 'build records, artifacts, checkins and scratch space', parse: directory }),
  baseArtifacts: option({ flag: '--base-artifacts', env: 'UOD_BASE_ARTIFACTS', arg: 'DIR', default: './base-artifacts/out',
    help: 'directory holding the base kernels and initramfs images', parse: directory }),
  trustedCidrs: option({ flag: '--trusted-cidrs', env: 'UOD_TRUSTED_CIDRS', arg: 'LIST', default: '127.0.0.0/8,::1/128',
    help: 'comma-separated networks (CIDR) whose clients may use the whole API; others may only fetch artifacts, PUT checkins and GET /healthz',
    parse: parseCidrList, format: (cidrs) => cidrs.map((c) => c.text).join(',') }),
  buildConcurrency: option({ flag: '--build-concurrency', env: 'UOD_BUILD_CONCURRENCY', arg: 'N',
    default: String(os.availableParallelism()), defaultText: 'CPU count', help: 'builds running at once', parse: positiveInt(1024) }),
  queueSize: option({ flag: '--queue-size', env: 'UOD_QUEUE_SIZE', arg: 'N', default: '64',
    help: 'builds waiting for a slot before POST answers 503', parse: positiveInt(1_000_000) }),
  maxBodyBytes: option({ flag: '--max-body-bytes', env: 'UOD_MAX_BODY_BYTES', arg: 'N', default: String(16 * 1024 * 1024),
    help: 'largest accepted request body, in bytes', parse: positiveInt(1024 * 1024 * 1024) }),
  maxFiles: option({ flag: '--max-files', env: 'UOD_MAX_FILES', arg: 'N', default: '1024',
    help: 'most entries accepted in files[] and in dirOverrides[]', parse: positiveInt(1_000_000) }),
  ukiWriter: option({ flag: '--uki-writer', env: 'UOD_UKI_WRITER', arg: UKI_WRITERS.join('|'), default: DEFAULT_UKI_WRITER,
    help: 'how UKIs are written: binutils objcopy, or the in-process PE writer (same layout, one pass over the inputs, several times faster)',
    parse: oneOf(UKI_WRITERS) }),
  secureBootKey: option({ flag: '--secure-boot-key', env: 'UOD_SECURE_BOOT_KEY', arg: 'FILE', default: null,
    help: 'PEM RSA private key that signs every UKI for UEFI Secure Boot (needs --secure-boot-cert)', parse: nonEmpty }),
  secureBootCert: option({ flag: '--secure-boot-cert', env: 'UOD_SECURE_BOOT_CERT', arg: 'FILE', default: null,
    help: 'PEM X.509 certificate of that key (the one to enroll in the servers\' db); its fingerprint is part of every build id', parse: nonEmpty }),
  logLevel: option({ flag: '--log-level', env: 'UOD_LOG_LEVEL', arg: 'LEVEL', default: 'info',
    help: `${LOG_LEVELS.join(', ')}; debug adds one line per GET`, parse: oneOf(LOG_LEVELS) }),
};

export type OptionKey = keyof typeof OPTIONS;

/** An option's value: what its parser returns, or null for an option without a default that was not given. */
type OptionValue<O> = O extends Option<infer T, infer D> ? (null extends D ? T | null : T) : never;

export type Config = { [K in OptionKey]: OptionValue<(typeof OPTIONS)[K]> };

const OPTION_LIST = Object.entries(OPTIONS) as Array<[OptionKey, AnyOption]>;

export function helpText(): string {
  const lines = ['Usage: uki-on-demand serve [options]', '', 'Options (each also read from the environment variable shown; a flag wins over the variable):'];
  for (const [, o] of OPTION_LIST) {
    const shown = o.defaultText ?? o.default;
    const left = `  ${o.flag} ${o.arg}`;
    lines.push(`${left.padEnd(36)} ${o.help}${shown === null ? '' : ` [default: ${shown}]`}`, `${''.padEnd(37)}env ${o.env}`);
  }
  lines.push(`  ${'--help'.padEnd(34)} show this text`);
  return lines.join('\n');
}

/** Builds the configuration from argv (without the "serve" word) and the environment. */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Config {
  // value and where it came from, so an error names the flag or variable the user actually set
  const given = new Map<OptionKey, { value: string; source: string }>();
  for (const [key, o] of OPTION_LIST) {
    const fromEnv = env[o.env];
    if (fromEnv !== undefined && fromEnv !== '') given.set(key, { value: fromEnv, source: o.env });
  }
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    const eq = word.indexOf('=');
    const flag = eq > 0 ? word.slice(0, eq) : word;
    const found = OPTION_LIST.find(([, o]) => o.flag === flag);
    if (!found) throw new ConfigError(`unknown option "${flag}" (see --help)`);
    const value = eq > 0 ? word.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new ConfigError(`${flag}: missing value`);
    given.set(found[0], { value, source: flag });
  }

  const parsed = OPTION_LIST.map(([key, o]) => {
    const raw = given.get(key);
    const value = raw?.value ?? o.default;
    try {
      return [key, value === null ? null : o.parse(value)];
    } catch (err) {
      throw new ConfigError(`${raw?.source ?? o.flag}: ${(err as Error).message}`);
    }
  });
  // Each entry holds what its option's parser returned, which is what Config says of that key.
  const config = Object.fromEntries(parsed) as Config;

  const tlsParts = [config.tlsListen, config.tlsCert, config.tlsKey].filter((x) => x !== null).length;
  if (tlsParts !== 0 && tlsParts !== 3) {
    throw new ConfigError('--tls-listen, --tls-cert and --tls-key must be given together');
  }
  if ((config.secureBootKey === null) !== (config.secureBootCert === null)) {
    throw new ConfigError('--secure-boot-key and --secure-boot-cert must be given together');
  }
  if (config.publicTlsUrl !== null && config.tlsListen === null) {
    throw new ConfigError('--public-tls-url: needs a TLS listener (--tls-listen)');
  }
  return config;
}

/** Every option's value as the user would type it (null: not set), for the start-up log. */
export function describeConfig(config: Config): Record<OptionKey, string | null> {
  const described = OPTION_LIST.map(([key, o]) => {
    const value: unknown = config[key];
    return [key, value === null ? null : o.format ? o.format(value) : String(value)];
  });
  return Object.fromEntries(described) as Record<OptionKey, string | null>;
}
