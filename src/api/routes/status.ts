// The status page (/ui) and its data: a snapshot as JSON (/ui/snapshot) and the same snapshot once a
// second as server-sent events (/ui/events). Trusted networks only, like the rest of the API (acl.ts).
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { BuildRegistry } from '../../builds/registry.js';
import type { CheckinRegistry } from '../../checkins/registry.js';
import type { DeliveryTracker } from '../../delivery/tracker.js';
import { STATUS_PAGE } from '../status/page.js';
import { statusSnapshot } from '../status/snapshot.js';

export const SNAPSHOT_INTERVAL_MS = 1000;

/** The open event streams of every listener: the service ends them first when it stops, so that shutdown does not wait for browsers. */
export class EventStreams {
  private readonly open = new Set<ServerResponse>();

  add(res: ServerResponse): void {
    this.open.add(res);
    res.on('close', () => this.open.delete(res));
  }

  endAll(): void {
    for (const res of this.open) res.end();
  }
}

export function statusRoutes(app: FastifyInstance, deps: { registry: BuildRegistry; checkins: CheckinRegistry; delivery: DeliveryTracker; eventStreams: EventStreams }): void {
  app.get('/ui', async (_request, reply) => reply.type('text/html; charset=utf-8').header('Cache-Control', 'no-store').send(STATUS_PAGE));
  app.get('/ui/snapshot', async (_request, reply) => reply.header('Cache-Control', 'no-store').send(statusSnapshot(deps)));

  app.get('/ui/events', (_request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
    const send = () => {
      res.write(`event: snapshot\ndata: ${JSON.stringify(statusSnapshot(deps))}\n\n`);
    };
    send();
    const timer = setInterval(send, SNAPSHOT_INTERVAL_MS);
    deps.eventStreams.add(res);
    res.on('close', () => clearInterval(timer));
  });
}
