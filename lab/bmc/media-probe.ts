// What a BMC does before it accepts virtual media: one HEAD of the image URL. It streams the image later
// through Range reads, so it refuses a server that gives no Content-Length or no `Accept-Ranges: bytes`.
// https is not verified, as on most BMCs (they cannot be given a CA).
import http from 'node:http';
import https from 'node:https';
import { MachineError, type MediaProbe } from './machine/machine.js';

export function httpMediaProbe(timeoutMs = 10_000): MediaProbe {
  return (image) =>
    new Promise((resolve, reject) => {
      const url = new URL(image);
      const client = url.protocol === 'https:' ? https : http;
      const fail = (why: string) => reject(new MachineError('media-unreachable', `cannot mount ${image}: ${why}`, 'Image'));
      const req = client.request(url, { method: 'HEAD', rejectUnauthorized: false, timeout: timeoutMs, headers: { 'user-agent': 'uod-virtual-bmc' } }, (res) => {
        res.resume();
        const length = res.headers['content-length'];
        if (res.statusCode !== 200) return fail(`HEAD answered ${res.statusCode}`);
        if (length === undefined || !/^\d+$/.test(length)) return fail('HEAD gave no Content-Length');
        if (res.headers['accept-ranges'] !== 'bytes') return fail('HEAD gave no "Accept-Ranges: bytes"');
        resolve();
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => fail(err.message));
      req.end();
    });
}
