// Liveness, metrics, and the certificate builds are signed with.
import type { FastifyInstance } from 'fastify';
import type { SecureBootSigner } from '../../image/secure-boot.js';
import type { Metrics } from '../../metrics.js';

export function systemRoutes(app: FastifyInstance, deps: { metrics: Metrics; signer?: SecureBootSigner | null }): void {
  // What an orchestrator enrolls in a server's db before it enforces Secure Boot.
  app.get('/api/v1/secure-boot', async (_request, reply) => {
    if (!deps.signer) return reply.code(404).send({ message: 'this service does not sign its builds: start it with --secure-boot-key and --secure-boot-cert' });
    return reply.send(await deps.signer.certificate());
  });
  app.get('/healthz', async (_request, reply) => reply.type('text/plain; charset=utf-8').send('ok'));
  app.get('/metrics', async (_request, reply) =>
    reply.type(deps.metrics.contentType).send(await deps.metrics.render()),
  );
}
