// Access control by client network, the one place that says who may call what: the Fastify hook and
// the artifact server both ask `refusal`. Trusted networks may do everything; everyone else (booted
// servers, BMCs, firmware) may only fetch artifacts, report a checkin and ask for health.
// X-Forwarded-For is never consulted: the socket's address is the only identity.
import { isAddressIn, normalizeAddress, type Cidr } from '../net/cidr.js';
import { ARTIFACT_ROUTE } from './artifacts.js';

/** The routes (as matched route patterns) an untrusted client may call, and with which methods. */
const OPEN_TO_UNTRUSTED: ReadonlyArray<{ methods: readonly string[]; route: string }> = [
  { methods: ['GET', 'HEAD'], route: '/healthz' },
  { methods: ['GET', 'HEAD'], route: ARTIFACT_ROUTE },
  { methods: ['PUT'], route: '/api/v1/checkins/:id' },
];
const OPEN = new Set(OPEN_TO_UNTRUSTED.flatMap(({ methods, route }) => methods.map((m) => `${m} ${route}`)));
const OPEN_LIST = OPEN_TO_UNTRUSTED.map(({ methods, route }) => `${methods.join('|')} ${route}`);

export class AccessPolicy {
  constructor(private readonly trusted: readonly Cidr[]) {}

  /**
   * Null when the client may call `method` on `route`, else the 403 body saying why not. `route` is
   * the matched route pattern, or undefined when no route matched (which untrusted clients can't probe).
   */
  refusal(remoteAddress: string | undefined, method: string, route: string | undefined): { message: string } | null {
    // The set lookup first: artifact reads, the bulk of all requests, then skip the address match.
    if (route !== undefined && OPEN.has(`${method} ${route}`)) return null;
    if (remoteAddress !== undefined && isAddressIn(remoteAddress, this.trusted)) return null;
    const who = remoteAddress ? normalizeAddress(remoteAddress) : 'unknown address';
    return {
      message: `forbidden: ${who} is not in a trusted network; only ${OPEN_LIST.slice(0, -1).join(', ')} and ${OPEN_LIST.at(-1)} are open to it`,
    };
  }
}
