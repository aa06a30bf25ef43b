// How a simulated server's BMC and firmware read the boot artifact from the service, as real ones do:
// virtual media is a HEAD, then Range reads of the ISO one chunk at a time; UEFI HTTP boot is one GET
// of the file. Both run at the server's link speed and stream to a file, never into memory.
import http from 'node:http';
import https from 'node:https';
import { open, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';

export interface LinkOptions {
  /** The link's speed in Mbit/s: reads are paced to it (0: as fast as the service answers). */
  mbps: number;
  /** Size of one Range read of virtual media (QEMU's curl driver reads 1 MiB at a time too). */
  chunkBytes?: number;
  signal?: AbortSignal;
}

const USER_AGENT = 'uod-virtual-bmc (simulated server)';

function request(url: URL, method: string, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    // https is not verified, as on BMCs and firmware without the service's CA.
    const req = client.request(url, { method, headers: { 'user-agent': USER_AGENT, ...headers }, rejectUnauthorized: false, timeout: 60_000, signal }, resolve);
    req.on('timeout', () => req.destroy(new Error('no answer within 60 s')));
    req.on('error', reject);
    req.end();
  });
}

/** Waits as long as a link of `mbps` needs for `bytes` bytes since `startedAt` (ms). */
class Pace {
  private readonly startedAt = Date.now();
  constructor(private readonly mbps: number, private readonly signal?: AbortSignal) {}
  async after(bytes: number): Promise<void> {
    if (this.mbps <= 0) return;
    const due = this.startedAt + (bytes * 8) / (this.mbps * 1000);
    const wait = due - Date.now();
    if (wait > 0) await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, wait);
      this.signal?.addEventListener('abort', () => (clearTimeout(timer), reject(this.signal!.reason)), { once: true });
    });
  }
}

async function writeBody(res: IncomingMessage, file: FileHandle, position: number, pace: Pace, done: number): Promise<number> {
  let written = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    await file.write(chunk, 0, chunk.length, position + written);
    written += chunk.length;
    await pace.after(done + written);
  }
  return written;
}

/** Virtual media: HEAD, then Range reads of `chunkBytes` in order, into `dest`. Returns the size. */
export async function readMedia(image: string, dest: string, link: LinkOptions): Promise<number> {
  const url = new URL(image);
  const head = await request(url, 'HEAD', {}, link.signal);
  head.resume();
  const length = Number(head.headers['content-length']);
  if (head.statusCode !== 200 || !Number.isSafeInteger(length)) throw new Error(`HEAD ${image}: ${head.statusCode}, Content-Length ${head.headers['content-length']}`);
  const chunk = link.chunkBytes ?? 1 << 20;
  const pace = new Pace(link.mbps, link.signal);
  const file = await open(dest, 'w');
  try {
    for (let offset = 0; offset < length; offset += chunk) {
      const end = Math.min(offset + chunk, length) - 1;
      const res = await request(url, 'GET', { range: `bytes=${offset}-${end}` }, link.signal);
      if (res.statusCode !== 206) {
        res.resume();
        throw new Error(`GET ${image} bytes ${offset}-${end}: ${res.statusCode}, not 206`);
      }
      const got = await writeBody(res, file, offset, pace, offset);
      if (got !== end - offset + 1) throw new Error(`GET ${image} bytes ${offset}-${end}: ${got} bytes`);
    }
  } finally {
    await file.close();
  }
  return length;
}

/** UEFI HTTP boot: one GET of the file into `dest`. Returns the size. */
export async function downloadBootFile(uri: string, dest: string, link: LinkOptions): Promise<number> {
  const res = await request(new URL(uri), 'GET', {}, link.signal);
  if (res.statusCode !== 200) {
    res.resume();
    throw new Error(`GET ${uri}: ${res.statusCode}`);
  }
  const file = await open(dest, 'w');
  try {
    return await writeBody(res, file, 0, new Pace(link.mbps, link.signal), 0);
  } finally {
    await file.close();
  }
}
