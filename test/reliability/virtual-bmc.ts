// A virtual BMC's virtual-media client, behaving like the real ones: HEAD first, refuse a server that
// does not give Content-Length and Accept-Ranges: bytes, then single-range GETs on one keep-alive
// connection, each checked for 206, the exact Content-Range and the exact length.
import { Client } from 'undici';

export class VirtualMediaError extends Error {}

export class VirtualMedia {
  private constructor(
    private readonly client: Client,
    private readonly path: string,
    readonly size: number,
    readonly etag: string | undefined,
  ) {}

  /** HEADs the image like a BMC inserting virtual media; throws VirtualMediaError when a BMC would refuse it. */
  static async mount(url: string, opts: { localAddress?: string } = {}): Promise<VirtualMedia> {
    const u = new URL(url);
    const client = new Client(u.origin, { localAddress: opts.localAddress, pipelining: 1, keepAliveTimeout: 30_000 });
    try {
      const head = await client.request({ path: u.pathname, method: 'HEAD' });
      await head.body.dump();
      if (head.statusCode !== 200) throw new VirtualMediaError(`HEAD ${u.pathname} answered ${head.statusCode}`);
      const length = head.headers['content-length'];
      if (typeof length !== 'string' || !/^\d+$/.test(length)) throw new VirtualMediaError(`HEAD gave no usable Content-Length (${String(length)})`);
      if (head.headers['accept-ranges'] !== 'bytes') throw new VirtualMediaError(`HEAD gave Accept-Ranges ${String(head.headers['accept-ranges'])}, not "bytes"`);
      return new VirtualMedia(client, u.pathname, Number(length), head.headers.etag as string | undefined);
    } catch (err) {
      await client.destroy();
      throw err;
    }
  }

  /** Reads [offset, offset+length) clipped to the image, with one Range request; checks the framing. */
  async read(offset: number, length: number): Promise<Buffer> {
    const last = Math.min(offset + length, this.size) - 1;
    const res = await this.client.request({ path: this.path, method: 'GET', headers: { range: `bytes=${offset}-${offset + length - 1}` } });
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (res.statusCode !== 206) throw new VirtualMediaError(`Range ${offset}+${length}: status ${res.statusCode}`);
    const expected = `bytes ${offset}-${last}/${this.size}`;
    if (res.headers['content-range'] !== expected) {
      throw new VirtualMediaError(`Range ${offset}+${length}: Content-Range ${String(res.headers['content-range'])}, expected ${expected}`);
    }
    if (body.length !== last - offset + 1) throw new VirtualMediaError(`Range ${offset}+${length}: ${body.length} bytes, expected ${last - offset + 1}`);
    if (res.headers.etag !== this.etag) throw new VirtualMediaError(`Range ${offset}+${length}: ETag changed to ${String(res.headers.etag)}`);
    return body;
  }

  async unmount(): Promise<void> {
    await this.client.close();
  }
}

export interface MountRun {
  reads: number;
  bytes: number;
  /** One line per failed or wrong read (at most 20 kept), empty on success. */
  errors: string[];
  errorCount: number;
}

/**
 * One simulated virtual-media session: mount, then `reads` random reads of the sizes given, each compared
 * byte for byte with `image` (the file as it is on disk). Some reads start on 2 KiB sectors like a CD
 * driver's, some at arbitrary bytes, some run past the end of the image.
 */
export async function exerciseMount(
  url: string,
  image: Buffer,
  opts: { reads: number; sizes: number[]; random: () => number; localAddress?: string; deadline: number },
): Promise<MountRun> {
  const run: MountRun = { reads: 0, bytes: 0, errors: [], errorCount: 0 };
  const fail = (msg: string) => {
    run.errorCount++;
    if (run.errors.length < 20) run.errors.push(msg);
  };
  let media: VirtualMedia;
  try {
    media = await VirtualMedia.mount(url, { localAddress: opts.localAddress });
  } catch (err) {
    fail(`mount: ${(err as Error).message}`);
    return run;
  }
  try {
    if (media.size !== image.length) fail(`HEAD says ${media.size} bytes, the file has ${image.length}`);
    for (let i = 0; i < opts.reads; i++) {
      if (Date.now() > opts.deadline) {
        fail(`deadline reached after ${i} reads`);
        break;
      }
      const size = opts.sizes[Math.floor(opts.random() * opts.sizes.length)] as number;
      const kind = opts.random();
      const offset =
        kind < 0.45 ? Math.floor(opts.random() * (image.length / 2048)) * 2048
          : kind < 0.95 ? Math.floor(opts.random() * image.length)
            : Math.max(0, image.length - Math.floor(opts.random() * size)); // runs past the end
      try {
        const got = await media.read(offset, size);
        if (!got.equals(image.subarray(offset, offset + size))) fail(`Range ${offset}+${size}: bytes differ from the file`);
        run.bytes += got.length;
      } catch (err) {
        fail((err as Error).message);
      }
      run.reads++;
    }
  } finally {
    await media.unmount().catch(() => {});
  }
  return run;
}
