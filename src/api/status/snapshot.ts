// What the status page shows, in one JSON document: recent builds with their state, delivery progress
// and the server they were built for (from their NoCloud seed), and every checkin with its addresses.
import type { BuildRecord, BuildRegistry } from '../../builds/registry.js';
import type { CheckinRegistry } from '../../checkins/registry.js';
import type { DeliveryTracker, FileDelivery } from '../../delivery/tracker.js';

/** A page shows the newest builds; an operator deletes old ones through the API. */
export const SNAPSHOT_BUILDS = 200;

const SEED = '/var/lib/cloud/seed/nocloud/';

export interface StatusSnapshot {
  at: string;
  builds: Array<{
    id: string;
    state: BuildRecord['state'];
    createdAt: string;
    completedAt?: string;
    error?: string;
    /** local-hostname of the seed's meta-data, when the build has one. */
    hostname?: string;
    /** The checkin id of the seed's checkin-url, when the build has one (inspection builds). */
    checkinId?: string;
    delivery?: { uki: FileDelivery; iso: FileDelivery };
  }>;
  checkins: Array<{ id: string; addresses: string[]; timestamp: string }>;
}

function seedFile(record: BuildRecord, name: string): string | undefined {
  const file = record.request.files.find((f) => f.path === SEED + name && f.type === 'file');
  return file?.contentBase64 === undefined ? undefined : Buffer.from(file.contentBase64, 'base64').toString('utf8');
}

export function statusSnapshot(deps: { registry: BuildRegistry; checkins: CheckinRegistry; delivery: DeliveryTracker }, now = new Date()): StatusSnapshot {
  const records = deps.registry.list().slice(-SNAPSHOT_BUILDS).reverse();
  return {
    at: now.toISOString(),
    builds: records.map((r) => {
      const hostname = /^local-hostname:\s*['"]?([^'"\s]+)/m.exec(seedFile(r, 'meta-data') ?? '')?.[1];
      const checkinId = /\/api\/v1\/checkins\/([A-Za-z0-9._-]{1,128})\s*$/.exec(seedFile(r, 'checkin-url') ?? '')?.[1];
      return {
        id: r.id,
        state: r.state,
        createdAt: r.createdAt,
        ...(r.completedAt ? { completedAt: r.completedAt } : {}),
        ...(r.error ? { error: r.error } : {}),
        ...(hostname ? { hostname } : {}),
        ...(checkinId ? { checkinId } : {}),
        ...(r.state === 'completed' && r.artifacts
          ? { delivery: deps.delivery.view(r.id, r.artifacts) }
          : {}),
      };
    }),
    checkins: deps.checkins.list().map((c) => ({ id: c.id, addresses: c.addresses, timestamp: c.timestamp })),
  };
}
