// A byte-exact HTTP/1.1 client for hostile requests that well-behaved clients refuse to send (dot
// segments, bad encodings, oversized headers, lying headers): one request per connection, read until close.
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The parsed JSON body, when the response says it is JSON. */
  json?: any;
}

export interface RawRequest {
  method: string;
  /** Sent as is, without any normalization. */
  target: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Adds a Content-Length matching the body unless the headers carry one (default true). */
  contentLength?: boolean;
}

export function rawRequest(origin: string, req: RawRequest, timeoutMs = 15_000): Promise<RawResponse> {
  const { hostname, port } = new URL(origin);
  const body = req.body === undefined ? Buffer.alloc(0) : Buffer.from(req.body);
  const headers: Record<string, string> = { host: `${hostname}:${port}`, connection: 'close', ...req.headers };
  const hasLength = Object.keys(headers).some((h) => h.toLowerCase() === 'content-length');
  if ((req.contentLength ?? true) && !hasLength && (req.body !== undefined || ['POST', 'PUT'].includes(req.method))) {
    headers['content-length'] = String(body.length);
  }
  const head = `${req.method} ${req.target} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;

  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response to ${req.method} ${req.target.slice(0, 80)} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => {
      // The server may answer and close before the whole body is written (413, 431): that is fine.
      socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]), () => {});
    });
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', (err) => {
      // A reset after the response arrived (the server closed while we were still sending) still counts.
      if (chunks.length === 0) {
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks), req.method === 'HEAD'));
      } catch (err) {
        reject(err);
      }
    });
  });
}

function parseResponse(raw: Buffer, isHead: boolean): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`incomplete HTTP response (${raw.length} bytes): ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const lines = raw.toString('latin1', 0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if (isHead) body = Buffer.alloc(0);
  else if (headers['transfer-encoding']?.includes('chunked')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  const res: RawResponse = { status: Number(m[1]), headers, body };
  if ((headers['content-type'] ?? '').includes('json') && body.length > 0) res.json = JSON.parse(body.toString('utf8'));
  return res;
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(data.toString('latin1', at, eol), 16);
    if (!size) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
