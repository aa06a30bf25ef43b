// Liveness and metrics.
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.js';

export function systemRoutes(app: FastifyInstance, deps: { metrics: Metrics }): void {
  app.get('/healthz', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('ok'));
  app.get('/metrics', async (_request, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );
}
