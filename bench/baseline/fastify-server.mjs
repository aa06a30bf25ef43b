// The request-handling baseline: bare Fastify routes with the service's paths and status codes and
// nothing else (Fastify's JSON body parsing, no validation, no storage, no logging). Listens on an
// ephemeral loopback port and prints one JSON line {"msg":"listening","port":N}.
import Fastify from 'fastify';

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
const id = 'f'.repeat(64);

app.post('/api/v1/builds', async (_request, reply) => {
  const statusUrl = `http://127.0.0.1/api/v1/builds/${id}`;
  return reply.code(202).header('Location', statusUrl).send({ id, statusUrl });
});

app.put('/api/v1/checkins/:id', async (_request, reply) => reply.code(204).send());

await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(JSON.stringify({ msg: 'listening', port: app.server.address().port }) + '\n');
for (const sig of ['SIGTERM', 'SIGINT']) process.once(sig, () => app.close().then(() => process.exit(0)));
