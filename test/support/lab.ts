// A fresh lab per test file (uniquely named namespace, state under the OS temp dir, always removed),
// and small clients for its build service and its BMCs, all called from inside the namespace with curl.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { defaultLabOptions, labDown, labUp, type LabDescription, type LabOptions, type LabServer } from '../../lab/lab.js';
import { nsFetch, type NsResponse } from '../../lab/ns-http.js';
import { b64, REPO, tempDir } from './service.js';
import { until } from './until.js';

export { until };

export interface TestLab {
  d: LabDescription;
  ns: string;
  down(): Promise<void>;
}

export async function startLab(overrides: Partial<LabOptions> = {}): Promise<TestLab> {
  const namespace = `uodt-${randomBytes(4).toString('hex')}`;
  const stateDir = tempDir('lab');
  const opts = defaultLabOptions(REPO, { namespace, stateDir, servers: 1, ...overrides });
  try {
    const { description } = await labUp(opts);
    return { d: description, ns: namespace, down: () => labDown(namespace, stateDir) };
  } catch (err) {
    await labDown(namespace, stateDir);
    throw err;
  }
}

export class Bmc {
  readonly system: string;
  constructor(
    private readonly ns: string,
    readonly server: LabServer,
  ) {
    this.system = `/redfish/v1/Systems/${server.bmc.systemId}`;
  }

  request(method: string, p: string, body?: unknown, opts: { auth?: string | null; headers?: Record<string, string> } = {}): Promise<NsResponse> {
    const auth = opts.auth === null ? undefined : (opts.auth ?? `${this.server.bmc.username}:${this.server.bmc.password}`);
    return nsFetch(this.ns, `${this.server.bmc.url}${p}`, { method, auth, body, headers: opts.headers, timeoutMs: 90_000 });
  }

  async get<T = any>(p: string): Promise<T> {
    const r = await this.request('GET', p);
    if (r.status !== 200) throw new Error(`GET ${p}: ${r.status} ${r.text}`);
    return r.json<T>();
  }

  async powerState(): Promise<string> {
    return (await this.get(this.system)).PowerState;
  }

  reset(type: string): Promise<NsResponse> {
    return this.request('POST', `${this.system}/Actions/ComputerSystem.Reset`, { ResetType: type });
  }

  setBoot(boot: Record<string, unknown>): Promise<NsResponse> {
    return this.request('PATCH', this.system, { Boot: boot });
  }

  /** InsertMedia into a slot (the standard BMC's Cd under the System unless told). */
  insert(image: string, slot = `${this.system}/VirtualMedia/Cd`): Promise<NsResponse> {
    return this.request('POST', `${slot}/Actions/VirtualMedia.InsertMedia`, { Image: image });
  }

  eject(slot = `${this.system}/VirtualMedia/Cd`): Promise<NsResponse> {
    return this.request('POST', `${slot}/Actions/VirtualMedia.EjectMedia`, {});
  }

  /** Polls the PowerState until it is `want`; returns the states seen on the way. */
  async waitForPower(want: string, timeoutMs: number): Promise<string[]> {
    const seen: string[] = [];
    await until(`${this.server.name} PowerState ${want}`, timeoutMs, async () => {
      const s = await this.powerState();
      if (seen[seen.length - 1] !== s) seen.push(s);
      return s === want ? true : undefined;
    }, 500);
    return seen;
  }

  /** The BMC's own log lines (JSON) with the given msg. */
  logEvents(msg: string): Record<string, unknown>[] {
    return jsonLines(this.server.bmcLog).filter((l) => l.msg === msg);
  }
}

export class LabService {
  constructor(
    private readonly ns: string,
    readonly d: LabDescription,
  ) {}

  async call<T = any>(method: string, p: string, body?: unknown): Promise<{ status: number; body: T }> {
    const r = await nsFetch(this.ns, `${this.d.serviceUrl}${p}`, { method, body });
    return { status: r.status, body: (r.text ? r.json<T>() : undefined) as T };
  }

  async registerCheckin(id: string): Promise<void> {
    const r = await this.call('POST', `/api/v1/checkins/${id}`, { addresses: [] });
    if (r.status !== 204) throw new Error(`register checkin ${id}: ${r.status}`);
  }

  async addresses(id: string): Promise<string[]> {
    const r = await this.call<{ addresses: string[] }>('GET', `/api/v1/checkins/${id}`);
    return r.status === 200 ? r.body.addresses : [];
  }

  async waitForCheckin(id: string, timeoutMs: number): Promise<string[]> {
    return until(`checkin ${id}`, timeoutMs, async () => {
      const a = await this.addresses(id);
      return a.length ? a : undefined;
    });
  }

  /** Builds from the tiny test initramfs with a checkin URL; returns the artifact URLs and the predicted PCR 11. */
  async buildTiny(checkinId: string, opts: { cmdline?: string; tls?: boolean } = {}): Promise<BuiltArtifacts> {
    return this.build({
      kernel: 'vmlinuz-amd64',
      initramfs: 'initramfs-tiny-amd64.img',
      cmdline: opts.cmdline ?? 'console=ttyS0,115200 uod.timeout=90',
      architecture: 'amd64',
      files: [{ path: '/var/lib/cloud/seed/nocloud/checkin-url', contentBase64: b64(`${this.d.serviceUrl}/api/v1/checkins/${checkinId}`) }],
      ...(opts.tls ? { tlsArtifacts: true } : {}),
    });
  }

  async build(request: Record<string, unknown>): Promise<BuiltArtifacts> {
    const r = await this.call<{ id: string }>('POST', '/api/v1/builds', request);
    if (r.status !== 202) throw new Error(`build: ${r.status} ${JSON.stringify(r.body)}`);
    return until('build', 300_000, async () => {
      const s = await this.call<any>('GET', `/api/v1/builds/${r.body.id}`);
      if (s.body.state === 'failed') throw new Error(`build failed: ${s.body.error}`);
      return s.body.state === 'completed' ? { ...s.body.artifacts, pcr11: s.body.measurements?.pcr11 ?? [] } : undefined;
    });
  }

  /** The service's log lines for artifact reads (debug level, one per request). */
  artifactReads(file: string): { method: string; range?: string; status: number; remote: string }[] {
    return jsonLines(this.d.serviceLog).filter((l) => l.msg === 'artifact request' && String(l.url).endsWith(file)) as any;
  }
}

export interface BuiltArtifacts {
  isoUrl: string;
  ukiUrl: string;
  /** The build status's PCR 11 predictions, per boot phase. */
  pcr11: { phase: string; sha256: string }[];
}

export function jsonLines(file: string): Record<string, any>[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((line) => {
    try {
      return line.startsWith('{') ? [JSON.parse(line)] : [];
    } catch {
      return [];
    }
  });
}


/** The console log of a server (ANSI escapes and CRs removed). */
export function consoleText(server: LabServer): string {
  if (!fs.existsSync(server.console)) return '';
  // eslint-disable-next-line no-control-regex
  return fs.readFileSync(server.console, 'latin1').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}

export const LAB_LOG_DIR = path.join(REPO, 'test-results/lab');
