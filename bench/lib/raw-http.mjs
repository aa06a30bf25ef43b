// A minimal HTTP/1.1 load generator on raw keep-alive sockets, for the figures that need exact request
// counts and exact per-request latencies (wrk has neither, and cannot send HEAD: it waits for a body
// that never comes). Per request it only scans for the end of the headers and counts body bytes, so
// its own cost (~10 µs) stays small next to the servers' and is the same for service and baseline.
import net from 'node:net';

/** A complete request as bytes. */
export function buildRequest({ method, path, port, headers = {}, body = null }) {
  const lines = [`${method} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  const payload = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(body);
  if (payload) lines.push(`Content-Length: ${payload.length}`);
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return payload ? Buffer.concat([head, payload]) : head;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Parses the head of a response in `buf`; returns { status, total } (total bytes incl. body) or null. */
function parseHead(buf, isHead) {
  const end = buf.indexOf(CRLFCRLF);
  if (end === -1) return null;
  const head = buf.toString('latin1', 0, end);
  const status = Number(head.slice(9, 12));
  let length = 0;
  if (!isHead && status !== 204 && status !== 304 && !(status >= 100 && status < 200)) {
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (!m) {
      if (/\r\ntransfer-encoding:/i.test(head)) throw new Error('chunked responses are not supported by the raw client');
      throw new Error(`response without Content-Length: ${head.slice(0, 200)}`);
    }
    length = Number(m[1]);
  }
  return { status, total: end + 4 + length };
}

function connect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Sends `count` requests (cycling through `requests`) over `connections` keep-alive sockets.
 * mode 'closed': each socket sends its next request as soon as the previous answer is complete.
 * mode 'burst': rounds of one request per socket, all sent at once; the next round starts when all
 * have answered. Returns { latenciesUs, elapsedMs, statuses }.
 */
export async function rawLoad({ port, requests, connections, count, mode = 'closed', isHead = false, timeoutMs = 120_000 }) {
  const sockets = await Promise.all(Array.from({ length: connections }, () => connect(port)));
  const latencies = new Float64Array(count);
  const statuses = {};
  let issued = 0;
  let completed = 0;
  let failure = null;
  const t0 = process.hrtime.bigint();

  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`raw load: ${completed}/${count} done after ${timeoutMs} ms`)), timeoutMs);
      const finish = (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const inRound = { left: 0 };
      const states = sockets.map((socket) => ({ socket, buf: Buffer.alloc(0), head: null, got: 0, sentAt: 0n, index: -1 }));
      const send = (st) => {
        if (issued >= count) return false;
        st.index = issued;
        const req = requests[issued % requests.length];
        issued++;
        st.sentAt = process.hrtime.bigint();
        st.socket.write(req);
        return true;
      };
      const startRound = () => {
        inRound.left = 0;
        for (const st of states) if (send(st)) inRound.left++;
        if (inRound.left === 0) finish();
      };
      for (const st of states) {
        st.socket.on('data', (chunk) => {
          // Until the head is complete, keep the bytes; after it, only count body bytes.
          if (st.head === null) {
            st.buf = st.buf.length ? Buffer.concat([st.buf, chunk]) : chunk;
            try {
              st.head = parseHead(st.buf, isHead);
            } catch (err) {
              failure = err;
              return finish(err);
            }
            if (st.head === null) return;
            st.got = st.buf.length;
            st.buf = Buffer.alloc(0);
          } else {
            st.got += chunk.length;
          }
          if (st.got < st.head.total) return;
          const now = process.hrtime.bigint();
          latencies[st.index] = Number(now - st.sentAt) / 1000;
          statuses[st.head.status] = (statuses[st.head.status] ?? 0) + 1;
          st.head = null;
          completed++;
          if (mode === 'closed') {
            if (!send(st) && completed === count) finish();
          } else if (--inRound.left === 0) {
            if (completed === count) finish();
            else startRound();
          }
        });
        st.socket.on('error', (err) => finish(err));
        st.socket.on('close', () => {
          if (completed < count && !failure) finish(new Error(`server closed a connection after ${completed}/${count} responses`));
        });
      }
      if (mode === 'closed') for (const st of states) send(st);
      else startRound();
    });
  } finally {
    for (const s of sockets) s.destroy();
  }
  return { latenciesUs: latencies, elapsedMs: Number(process.hrtime.bigint() - t0) / 1e6, statuses };
}
