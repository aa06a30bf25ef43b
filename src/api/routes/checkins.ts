// /api/v1/checkins: the orchestrator registers an id (POST), the booted server reports its addresses
// (PUT, the one write open to untrusted clients, and only for ids that were registered).
import type { FastifyInstance } from 'fastify';
import { CHECKIN_ID, parseCheckinBody } from '../../checkins/checkin-request.js';
import type { CheckinRegistry } from '../../checkins/registry.js';
import { HttpError } from '../errors.js';

type WithId = { Params: { id: string } };

function checkedId(id: string): string {
  if (!CHECKIN_ID.test(id)) throw new HttpError(400, 'id: must be 1 to 128 characters from [A-Za-z0-9._-]');
  return id;
}

export function checkinRoutes(app: FastifyInstance, deps: { checkins: CheckinRegistry }): void {
  const { checkins } = deps;

  app.post<WithId>('/api/v1/checkins/:id', async (request, reply) => {
    const id = checkedId(request.params.id);
    await checkins.register(id, parseCheckinBody(request.body));
    return reply.code(204).send();
  });

  app.put<WithId>('/api/v1/checkins/:id', async (request, reply) => {
    const id = checkedId(request.params.id);
    const addresses = parseCheckinBody(request.body);
    if (!(await checkins.update(id, addresses))) {
      throw new HttpError(404, `checkin "${id}" is not registered; the orchestrator must POST it first`);
    }
    return reply.code(204).send();
  });

  app.get<WithId>('/api/v1/checkins/:id', async (request) => {
    const record = checkins.get(request.params.id);
    if (!record) throw new HttpError(404, `checkin "${request.params.id.slice(0, 128)}" not found`);
    return record;
  });

  app.delete<WithId>('/api/v1/checkins/:id', async (request, reply) => {
    if (!(await checkins.delete(request.params.id))) throw new HttpError(404, `checkin "${request.params.id.slice(0, 128)}" not found`);
    return reply.code(204).send();
  });

  app.delete('/api/v1/checkins', async (_request, reply) => {
    await checkins.purge();
    return reply.code(204).send();
  });
}
