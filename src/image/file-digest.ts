// Size and SHA-256 of a file read back from disk: for what a tool wrote (writeFileFromSegments hashes
// as it writes) and for the base artifacts.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { CHUNK_BYTES } from './segments.js';

export async function digestFile(path: string): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}
