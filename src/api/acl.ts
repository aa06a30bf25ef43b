// Access control by client network. Trusted networks may do everything; everyone else (booted servers,
// BMCs, firmware) may only fetch artifacts, report a checkin and ask for health. X-Forwarded-For is
// never consulted: the socket's address is the only identity.
import { isAddressIn, normalizeAddress, type Cidr } from '../net/cidr.js';

/** The routes an untrusted client may call, as "METHOD route-pattern". */
const UNTRUSTED_ALLOWED = new Set([
  'GET /healthz',
  'HEAD /healthz',
  'GET /artifacts/:id/:file',
  'HEAD /artifacts/:id/:file',
  'PUT /api/v1/checkins/:id',
]);

export class AccessPolicy {
  constructor(private readonly trusted: readonly Cidr[]) {}

  isTrusted(remoteAddress: string | undefined): boolean {
    return remoteAddress !== undefined && isAddressIn(remoteAddress, this.trusted);
  }

  /** `route` is the matched route pattern, or undefined when no route matched (which untrusted clients can't probe). */
  allows(remoteAddress: string | undefined, method: string, route: string | undefined): boolean {
    if (this.isTrusted(remoteAddress)) return true;
    return route !== undefined && UNTRUSTED_ALLOWED.has(`${method} ${route}`);
  }

  denial(remoteAddress: string | undefined): { message: string } {
    const who = remoteAddress ? normalizeAddress(remoteAddress) : 'unknown address';
    return { message: `forbidden: ${who} is not in a trusted network; only artifact downloads, checkin updates (PUT) and /healthz are open to it` };
  }
}
