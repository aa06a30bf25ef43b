// Writes a whole buffer at a file position, through short writes: the one such loop.

/** The part of a FileHandle that writeAllAt uses (a fake one in tests). */
export interface PositionalWriter {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
}

/**
 * Writes all of `data` at `position`, continuing after short writes. Positional writes only, so
 * the handle may be shared. A write that takes nothing is an error: retrying it would never end.
 */
export async function writeAllAt(out: PositionalWriter, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await out.write(data, done, data.length - done, position + done);
    if (!(bytesWritten > 0)) {
      throw new Error(`short write: nothing more written at offset ${position + done} (${done} of ${data.length} bytes)`);
    }
    done += bytesWritten;
  }
}
