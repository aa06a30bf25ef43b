// Redfish sessions (DSP0266 "Session management"): POST the credentials to the Sessions collection,
// get an X-Auth-Token, send it instead of Basic; DELETE the session to log out. Every BMC has them;
// with the session-only quirk they are the only way in.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { errors } from './errors.js';

export const SESSIONS = '/redfish/v1/SessionService/Sessions';

export class Sessions {
  private readonly byToken = new Map<string, string>(); // token -> session id
  private next = 1;

  constructor(private readonly credentials: Buffer) {}

  matches(user: string, password: string): boolean {
    const got = Buffer.from(`${user}:${password}`);
    return got.length === this.credentials.length && timingSafeEqual(got, this.credentials);
  }

  valid(token: string): boolean {
    return this.byToken.has(token);
  }

  create(): { id: string; token: string } {
    const id = String(this.next++);
    const token = randomBytes(24).toString('hex');
    this.byToken.set(token, id);
    return { id, token };
  }

  ids(): string[] {
    return [...this.byToken.values()];
  }

  remove(id: string): boolean {
    for (const [token, sid] of this.byToken) {
      if (sid === id) return this.byToken.delete(token);
    }
    return false;
  }
}

export function registerSessionRoutes(app: FastifyInstance, sessions: Sessions): void {
  const session = (id: string) => ({ '@odata.id': `${SESSIONS}/${id}`, '@odata.type': '#Session.v1_5_0.Session', Id: id, Name: `Session ${id}`, UserName: 'admin' });
  app.get('/redfish/v1/SessionService', async () => ({
    '@odata.id': '/redfish/v1/SessionService', '@odata.type': '#SessionService.v1_1_8.SessionService', Id: 'SessionService', Name: 'Session Service',
    ServiceEnabled: true, SessionTimeout: 1800, Sessions: { '@odata.id': SESSIONS },
  }));
  app.get(SESSIONS, async () => {
    const ids = sessions.ids();
    return { '@odata.id': SESSIONS, '@odata.type': '#SessionCollection.SessionCollection', Name: 'Sessions', 'Members@odata.count': ids.length, Members: ids.map((id) => ({ '@odata.id': `${SESSIONS}/${id}` })) };
  });
  app.post(SESSIONS, async (req, reply) => {
    const body = (req.body ?? {}) as { UserName?: unknown; Password?: unknown };
    if (typeof body.UserName !== 'string' || typeof body.Password !== 'string' || !sessions.matches(body.UserName, body.Password)) throw errors.unauthorized();
    const { id, token } = sessions.create();
    return reply.code(201).header('x-auth-token', token).header('location', `${SESSIONS}/${id}`).header('odata-version', '4.0').send(session(id));
  });
  app.get(`${SESSIONS}/:id`, async (req) => {
    const id = (req.params as { id: string }).id;
    if (!sessions.ids().includes(id)) throw errors.notFound(req.url);
    return session(id);
  });
  app.delete(`${SESSIONS}/:id`, async (req, reply) => {
    if (!sessions.remove((req.params as { id: string }).id)) throw errors.notFound(req.url);
    return reply.code(204).send();
  });
}
