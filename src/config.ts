// Service configuration: one table declares every option once (flag, env var, default, help, parser);
// flags win over the environment, the environment over defaults.
import os from 'node:os';
import path from 'node:path';
import { parseCidrList, type Cidr } from './net/cidr.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface ServiceConfig {
  listen: HostPort;
  tlsListen: HostPort | null;
  tlsCert: string | null;
  tlsKey: string | null;
  /** null: the address the plain listener bound, resolved once listening. */
  publicUrl: string | null;
  /** null: the address the TLS listener bound, if there is one. */
  publicTlsUrl: string | null;
  dataDir: string;
  baseArtifacts: string;
  trustedCidrs: Cidr[];
  buildConcurrency: number;
  queueSize: number;
  maxBodyBytes: number;
  maxFiles: number;
  logLevel: string;
  ukiWriter: 'objcopy' | 'direct';
}

export class ConfigError extends Error {}

interface OptionSpec<K extends keyof ServiceConfig> {
  key: K;
  flag: string;
  env: string;
  arg: string;
  help: string;
  /** Default as the user would type it; null means "unset". */
  default: string | null;
  parse: (raw: string) => ServiceConfig[K];
}

function option<K extends keyof ServiceConfig>(spec: OptionSpec<K>): OptionSpec<K> {
  return spec;
}

export function parseHostPort(raw: string): HostPort {
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

const nonEmpty = (raw: string): string => {
  if (raw === '') throw new ConfigError('must not be empty');
  return raw;
};

export const OPTIONS = [
  option({ key: 'listen', flag: '--listen', env: 'UOD_LISTEN', arg: 'HOST:PORT', default: '127.0.0.1:8080',
    help: 'plain HTTP listener', parse: parseHostPort }),
  option({ key: 'tlsListen', flag: '--tls-listen', env: 'UOD_TLS_LISTEN', arg: 'HOST:PORT', default: null,
    help: 'HTTPS listener (needs --tls-cert and --tls-key)', parse: parseHostPort }),
  option({ key: 'tlsCert', flag: '--tls-cert', env: 'UOD_TLS_CERT', arg: 'FILE', default: null,
    help: 'PEM certificate chain for the HTTPS listener', parse: nonEmpty }),
  option({ key: 'tlsKey', flag: '--tls-key', env: 'UOD_TLS_KEY', arg: 'FILE', default: null,
    help: 'PEM private key for the HTTPS listener', parse: nonEmpty }),
  option({ key: 'publicUrl', flag: '--public-url', env: 'UOD_PUBLIC_URL', arg: 'URL', default: null,
    help: 'base of the URLs handed out (statusUrl, artifact URLs); default: http:// and the address the listener bound', parse: httpUrl }),
  option({ key: 'publicTlsUrl', flag: '--public-tls-url', env: 'UOD_PUBLIC_TLS_URL', arg: 'URL', default: null,
    help: 'base of artifact URLs for tlsArtifacts builds; default: https:// and the address the TLS listener bound', parse: httpUrl }),
  option({ key: 'dataDir', flag: '--data-dir', env: 'UOD_DATA_DIR', arg: 'DIR', default: './data',
    help: 'build records, artifacts, checkins and scratch space', parse: (r) => path.resolve(nonEmpty(r)) }),
  option({ key: 'baseArtifacts', flag: '--base-artifacts', env: 'UOD_BASE_ARTIFACTS', arg: 'DIR',
    default: './base-artifacts/out', help: 'directory holding the base kernels and initramfs images',
    parse: (r) => path.resolve(nonEmpty(r)) }),
  option({ key: 'trustedCidrs', flag: '--trusted-cidrs', env: 'UOD_TRUSTED_CIDRS', arg: 'CIDR,CIDR,...',
    default: '127.0.0.0/8,::1/128', help: 'clients allowed to use the whole API; others may only fetch artifacts, PUT checkins and GET /healthz',
    parse: parseCidrList }),
  option({ key: 'buildConcurrency', flag: '--build-concurrency', env: 'UOD_BUILD_CONCURRENCY', arg: 'N',
    default: String(os.availableParallelism()), help: 'builds running at once (default: CPU count)', parse: positiveInt(1024) }),
  option({ key: 'queueSize', flag: '--queue-size', env: 'UOD_QUEUE_SIZE', arg: 'N', default: '64',
    help: 'builds waiting for a slot before POST answers 503', parse: positiveInt(1_000_000) }),
  option({ key: 'maxBodyBytes', flag: '--max-body-bytes', env: 'UOD_MAX_BODY_BYTES', arg: 'BYTES', default: String(16 * 1024 * 1024),
    help: 'largest accepted request body', parse: positiveInt(1024 * 1024 * 1024) }),
  option({ key: 'maxFiles', flag: '--max-files', env: 'UOD_MAX_FILES', arg: 'N', default: '1024',
    help: 'most entries accepted in files[] and in dirOverrides[]', parse: positiveInt(1_000_000) }),
  option({ key: 'ukiWriter', flag: '--uki-writer', env: 'UOD_UKI_WRITER', arg: 'objcopy|direct', default: 'objcopy',
    help: 'how UKIs are written: binutils objcopy, or the in-process PE writer (same layout, one pass over the inputs, several times faster)',
    parse: (r) => {
      if (r !== 'objcopy' && r !== 'direct') throw new ConfigError(`expected "objcopy" or "direct", got "${r}"`);
      return r;
    } }),
  option({ key: 'logLevel', flag: '--log-level', env: 'UOD_LOG_LEVEL', arg: 'LEVEL', default: 'info',
    help: 'fatal, error, warn, info, debug or trace', parse: (r) => {
      if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(r)) throw new ConfigError(`unknown level "${r}"`);
      return r;
    } }),
] as const;

export function helpText(): string {
  const lines = ['Usage: uki-on-demand serve [options]', '', 'Options (each also read from the environment variable shown):'];
  for (const o of OPTIONS) {
    const left = `  ${o.flag} ${o.arg}`;
    const dflt = o.default === null ? '' : ` [default: ${o.default}]`;
    lines.push(`${left.padEnd(36)} ${o.help}${dflt}`, `${''.padEnd(37)}env ${o.env}`);
  }
  lines.push(`  ${'--help'.padEnd(34)} show this text`);
  return lines.join('\n');
}

/** Builds the configuration from argv (without the "serve" word) and the environment. */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServiceConfig {
  // value and where it came from, so an error names the flag or variable the user actually set
  const raw = new Map<string, { value: string; source: string }>();
  for (const o of OPTIONS) {
    const fromEnv = env[o.env];
    if (fromEnv !== undefined && fromEnv !== '') raw.set(o.key, { value: fromEnv, source: o.env });
  }
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    const eq = word.indexOf('=');
    const flag = eq > 0 ? word.slice(0, eq) : word;
    const o = OPTIONS.find((x) => x.flag === flag);
    if (!o) throw new ConfigError(`unknown option "${flag}" (see --help)`);
    const value = eq > 0 ? word.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new ConfigError(`${o.flag}: missing value`);
    raw.set(o.key, { value, source: o.flag });
  }

  const cfg: Record<string, unknown> = {};
  for (const o of OPTIONS) {
    const given = raw.get(o.key);
    const value = given?.value ?? o.default;
    if (value === null) {
      cfg[o.key] = null;
      continue;
    }
    try {
      cfg[o.key] = o.parse(value);
    } catch (err) {
      throw new ConfigError(`${given?.source ?? o.flag}: ${(err as Error).message}`);
    }
  }
  const c = cfg as unknown as ServiceConfig;

  const tlsParts = [c.tlsListen, c.tlsCert, c.tlsKey].filter((x) => x !== null).length;
  if (tlsParts !== 0 && tlsParts !== 3) {
    throw new ConfigError('--tls-listen, --tls-cert and --tls-key must be given together');
  }
  if (c.publicTlsUrl !== null && !c.tlsListen) {
    throw new ConfigError('--public-tls-url: needs a TLS listener (--tls-listen)');
  }
  return c;
}
