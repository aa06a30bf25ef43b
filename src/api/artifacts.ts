// Serving published artifacts to BMC virtual media and UEFI HTTP Boot. This path bypasses Fastify's
// routing: BMCs issue thousands of small Range reads per mount, so per-request work is kept to a table
// lookup and one positional read on a file descriptor that stays open while the build exists.
// Headers are computed once per artifact, from what was recorded at publish.
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { BuildRecord, BuildRegistry } from '../builds/registry.js';
import { ARTIFACT_FILES, ARTIFACTS, type ArtifactKind } from '../image/artifacts.js';
import type { Metrics } from '../metrics.js';
import type { DeliveryTracker, FileState } from '../delivery/tracker.js';
import { PromiseCache } from '../concurrency/promise-cache.js';
import type { AccessPolicy } from './acl.js';
import { evaluateConditional, type Representation } from './http-conditional.js';

export const ARTIFACT_ROUTE = '/artifacts/:id/:file';
const ARTIFACT_PATH = /^\/artifacts\/([0-9a-f]{64})\/(uki\.efi|boot\.iso)$/;
const NOT_FOUND = `no such artifact; URLs look like /artifacts/<64-hex build id>/${ARTIFACT_FILES.uki} or /${ARTIFACT_FILES.iso}`;
const KIND_BY_FILE = Object.fromEntries(Object.entries(ARTIFACT_FILES).map(([kind, file]) => [file, kind])) as Record<string, ArtifactKind>;
/** Larger chunks cut per-chunk overhead; measured best around 1 MiB on loopback. */
const CHUNK = 1024 * 1024;
/**
 * Read buffers are reused once the socket has taken their bytes: allocating a fresh 1 MiB buffer per
 * read made the garbage collector run every ~90 ms under BMC load and cost ~60% more CPU per GB.
 */
const POOL_LIMIT = 32;
const bufferPool: Buffer[] = [];
const takeBuffer = (): Buffer => bufferPool.pop() ?? Buffer.allocUnsafeSlow(CHUNK);
const giveBack = (buf: Buffer): void => {
  if (bufferPool.length < POOL_LIMIT) bufferPool.push(buf);
};

interface OpenArtifact extends Representation {
  fd: number;
  /** The headers of a 200, and the base of a 206's. */
  headers: Record<string, string>;
  /** The headers of a 304 (RFC 9110 §15.4.5: those a 200 would have carried that describe the representation). */
  notModifiedHeaders: Record<string, string>;
  users: number;
  retired: boolean;
}

export class ArtifactServer {
  /** Descriptors by `${id}/${kind}`, opened on first request and kept until the build is removed. */
  private readonly open = new PromiseCache<string, OpenArtifact>();
  /** Records whose files are leaving: between removal notice and the record's disappearance nothing may reopen them. */
  private readonly retiredRecords = new WeakSet<BuildRecord>();

  constructor(
    private readonly deps: { registry: BuildRegistry; metrics: Metrics; policy: AccessPolicy; logger: Logger; delivery: DeliveryTracker },
  ) {
    deps.registry.onRemoved((id) => {
      deps.delivery.forget(id);
      void this.retire(id);
    });
  }

  /** True when the URL belongs to this server (then the response is handled here). */
  static owns(url: string | undefined): boolean {
    return url !== undefined && url.startsWith('/artifacts/');
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const status = (code: number) => {
      this.deps.metrics.countRequest(method, ARTIFACT_ROUTE, code);
      // One line per read at debug level: what a BMC's virtual-media mount or a firmware fetch did.
      if (this.deps.logger.isLevelEnabled('debug')) {
        this.deps.logger.debug({ method, url: req.url?.slice(0, 200), range: req.headers.range, remote: req.socket.remoteAddress, status: code }, 'artifact request');
      }
    };
    const refused = this.deps.policy.refusal(req.socket.remoteAddress, method, ARTIFACT_ROUTE);
    if (refused) {
      sendJson(res, 403, refused);
      return status(403);
    }
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, { message: `method ${method} not allowed on artifacts; use GET or HEAD` });
      return status(405);
    }
    const rawPath = (req.url ?? '').split('?', 1)[0] as string;
    const m = ARTIFACT_PATH.exec(rawPath);
    if (!m) {
      sendJson(res, 404, { message: NOT_FOUND });
      return status(404);
    }
    const id = m[1] as string;
    const kind = KIND_BY_FILE[m[2] as string] as ArtifactKind;
    this.acquire(id, kind).then(
      (artifact) => {
        if (!artifact) {
          sendJson(res, 404, { message: `no completed build ${id} with ${m[2]}` });
          return status(404);
        }
        status(this.respond(req, res, method, artifact, id, kind));
      },
      (err) => {
        this.deps.logger.error({ err, buildId: id }, 'cannot open artifact');
        sendJson(res, 500, { message: 'artifact could not be read' });
        status(500);
      },
    );
  }

  private respond(req: IncomingMessage, res: ServerResponse, method: string, a: OpenArtifact, id: string, kind: ArtifactKind): number {
    const h = req.headers;
    const outcome = evaluateConditional(
      {
        range: h.range,
        ifRange: h['if-range'] as string | undefined,
        ifMatch: h['if-match'],
        ifNoneMatch: h['if-none-match'],
        ifModifiedSince: h['if-modified-since'],
        ifUnmodifiedSince: h['if-unmodified-since'],
      },
      a,
      Date.now(),
    );
    if (outcome.status === 304) {
      res.writeHead(304, a.notModifiedHeaders);
      res.end();
    } else if (outcome.status === 412) {
      sendJson(res, 412, { message: outcome.reason });
    } else if (outcome.status === 416) {
      sendJson(res, 416, { message: `Range: ${outcome.reason}` }, { 'Content-Range': `bytes */${a.size}`, 'Accept-Ranges': 'bytes' });
    } else {
      const [start, end] = outcome.status === 206 ? [outcome.start, outcome.end] : [0, a.size - 1];
      const length = a.size === 0 ? 0 : end - start + 1;
      res.writeHead(
        outcome.status,
        outcome.status === 206 ? { ...a.headers, 'Content-Length': String(length), 'Content-Range': `bytes ${start}-${end}/${a.size}` } : a.headers,
      );
      if (method === 'GET' && length > 0) {
        const delivery = this.deps.delivery.file(id, kind, a.size);
        delivery.reader(req.socket.remoteAddress ?? 'unknown');
        this.stream(res, a, start, length, kind, delivery, () => this.release(a));
        return outcome.status;
      }
      res.end();
    }
    this.release(a);
    return outcome.status;
  }

  /** Copies [start, start+length) to the response with positional reads, honouring backpressure. */
  private stream(res: ServerResponse, a: OpenArtifact, start: number, length: number, kind: ArtifactKind, delivery: FileState, release: () => void): void {
    let offset = start;
    let remaining = length;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      release();
    };
    res.on('close', done);
    const file = ARTIFACT_FILES[kind];
    const next = () => {
      if (finished || res.destroyed) return done();
      const want = Math.min(CHUNK, remaining);
      const buf = takeBuffer();
      fs.read(a.fd, buf, 0, want, offset, (err, n) => {
        if (err || n === 0) {
          giveBack(buf);
          this.deps.logger.error({ err, offset }, 'artifact read failed');
          res.destroy(err ?? new Error('artifact shorter than recorded'));
          return done();
        }
        // Counted when handed to the socket: a reader that goes away mid-chunk is credited the chunk.
        this.deps.delivery.served(delivery, offset, n);
        offset += n;
        remaining -= n;
        this.deps.metrics.countArtifactBytes(file, n);
        const chunk = buf.subarray(0, n);
        // The callback runs once the bytes have left the buffer (or the socket died): only then reuse it.
        const returned = () => giveBack(buf);
        if (remaining === 0) {
          res.end(chunk, () => {
            returned();
            done();
          });
        } else if (res.write(chunk, returned)) {
          next();
        } else {
          res.once('drain', next);
        }
      });
    };
    next();
  }

  private async acquire(id: string, kind: ArtifactKind): Promise<OpenArtifact | null> {
    const record = this.deps.registry.get(id);
    if (!record || record.state !== 'completed' || !record.artifacts || this.retiredRecords.has(record)) return null;
    const published = record.artifacts[kind];
    const a = await this.open.get(`${id}/${kind}`, async () => {
      // A raw descriptor, not a FileHandle: a FileHandle closes itself when garbage-collected.
      const fd = await openFd(this.deps.registry.artifactPath(id, kind));
      const completedAt = new Date(record.completedAt ?? record.createdAt);
      const cacheHeaders = {
        ETag: `"${published.sha256}"`,
        'Last-Modified': completedAt.toUTCString(),
        'Cache-Control': 'public, max-age=31536000, immutable',
      };
      return {
        fd,
        size: published.size,
        etag: cacheHeaders.ETag,
        lastModifiedMs: Math.floor(completedAt.getTime() / 1000) * 1000,
        headers: { 'Content-Type': ARTIFACTS[kind].contentType, 'Content-Length': String(published.size), 'Accept-Ranges': 'bytes', ...cacheHeaders },
        notModifiedHeaders: cacheHeaders,
        users: 0,
        retired: false,
      };
    });
    if (a.retired) return null;
    a.users++;
    return a;
  }

  private release(a: OpenArtifact): void {
    a.users--;
    if (a.retired && a.users === 0) fs.close(a.fd, () => {});
  }

  /** Stops serving a build's files; descriptors close once in-flight responses finish. */
  private async retire(id: string): Promise<void> {
    const record = this.deps.registry.get(id);
    if (record) this.retiredRecords.add(record);
    await Promise.all(
      Object.keys(ARTIFACT_FILES).map(async (kind) => {
        const key = `${id}/${kind}`;
        const pending = this.open.peek(key);
        if (!pending) return;
        this.open.delete(key);
        const a = await pending.catch(() => null);
        if (!a) return;
        a.retired = true;
        if (a.users === 0) await new Promise((resolve) => fs.close(a.fd, resolve));
      }),
    );
  }

  /** Closes every descriptor (service shutdown, after the listeners have stopped). */
  async closeAll(): Promise<void> {
    await Promise.all(this.deps.registry.list().map((record) => this.retire(record.id)));
  }
}

function openFd(file: string): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, 'r', (err, fd) => (err ? reject(err) : resolve(fd))));
}

function sendJson(res: ServerResponse, status: number, body: { message: string }, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
