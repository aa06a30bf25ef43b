// The Redfish HTTP adapter of the virtual BMC: basic auth (the service root answers without it, as
// DSP0266 requires), routes for the resources and actions, ETags on GETs and If-Match on PATCH,
// 405 with Allow for a known resource and the wrong method, and Redfish error bodies for everything.
import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { MachineError, type Machine } from '../machine/machine.js';
import { Accepted, Created, found, Located, insertMedia, METHODS, objectBody, patchMedia, patchSystem, Tasks, etagOf, type Handler } from './actions.js';
import { errorBody, errors, fromMachineError, RedfishError } from './errors.js';
import { KVM_MEDIA_ID, MEDIA_ID, Resources, STORAGE_ID, type Inventory } from './resources.js';
import { registerRecordedRoutes } from './recorded.js';
import { certificateBody, certificatesBody, databasesBody, dbBody, patchSecureBoot, postCertificate, secureBootBody, secureBootPaths } from './secure-boot.js';
import { registerSessionRoutes, Sessions, SESSIONS } from './sessions.js';
import type { BmcProfile } from '../profiles/profiles.js';
import type { Recording } from '../profiles/recording.js';

export interface RedfishOptions {
  inventory: Inventory;
  machine: Machine;
  username: string;
  password: string;
  bmcUuid: string;
  https?: { key: string; cert: string };
  logLevel?: string;
  /** insert-task: how long the InsertMedia task runs before the image is attached. */
  insertTaskMs?: number;
  /** A profiled BMC: the recording's resource tree instead of the lab's standard resources. */
  recorded?: { recording: Recording; profile: BmcProfile };
}



export function buildRedfishApp(opts: RedfishOptions): FastifyInstance {
  const app = Fastify({
    logger: { level: opts.logLevel ?? 'info' },
    ...(opts.https ? { https: opts.https } : {}),
    routerOptions: { ignoreTrailingSlash: true },
    bodyLimit: 64 * 1024,
  }) as unknown as FastifyInstance;
  const res = new Resources(opts.inventory, opts.machine, opts.bmcUuid);
  const tasks = new Tasks();
  const want = Buffer.from(`${opts.username}:${opts.password}`);
  const sessions = new Sessions(want);

  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    if (body === '') return done(null, {});
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(errors.malformedJson(), undefined);
    }
  });
  app.removeContentTypeParser('text/plain');

  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!.replace(/\/+$/, '');
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/redfish' || path === '/redfish/v1' || path === '') return;
    }
    // A session's token, or the credentials in the body of the login itself.
    const token = req.headers['x-auth-token'];
    if (typeof token === 'string' && sessions.valid(token)) return;
    if (req.method === 'POST' && path === SESSIONS) return;
    if (opts.machine.quirks.has('session-only')) throw errors.unauthorized('this BMC takes Redfish sessions only: POST the credentials to ' + SESSIONS);
    const auth = req.headers.authorization ?? '';
    const m = /^Basic\s+(.+)$/i.exec(auth);
    const got = m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0);
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw errors.unauthorized();
  });

  // transient-500: every other change request is refused as iDRAC refuses them while it reloads.
  let changes = 0;
  app.addHook('preHandler', async (req) => {
    if (!opts.machine.quirks.has('transient-500') || (req.method !== 'POST' && req.method !== 'PATCH') || req.url.startsWith(SESSIONS)) return;
    if (changes++ % 2 === 0) throw new RedfishError(500, 'IDRAC.2.8.SYS518', 'iDRAC is not ready. The configuration values cannot be accessed. Please retry after a few minutes.');
  });

  app.setErrorHandler((err, req, reply) => {
    let rf: RedfishError;
    if (err instanceof RedfishError) rf = err;
    else if (err instanceof MachineError) rf = fromMachineError(err, req.url.includes('/Actions/') ? req.url : undefined);
    else if ((err as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') rf = errors.unsupportedMediaType();
    else if ((err as { statusCode?: number }).statusCode === 413) rf = new RedfishError(413, 'Base.1.15.PayloadTooLarge', 'The request body is too large.');
    else {
      req.log.error({ err }, 'unexpected error');
      rf = new RedfishError(500, 'Base.1.15.InternalError', 'The request failed due to an internal service error.');
    }
    void reply.code(rf.status).headers(rf.headers).header('odata-version', '4.0').send(errorBody(rf));
  });

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).header('odata-version', '4.0').send(errorBody(errors.notFound(req.url)));
  });

  registerSessionRoutes(app, sessions);
  app.route({
    method: 'GET',
    url: '/redfish/v1/TaskService/Tasks/:task',
    handler: async (req, reply) => reply.header('odata-version', '4.0').send(found(req, tasks.get((req.params as { task: string }).task))),
  });
  if (opts.recorded) {
    registerRecordedRoutes(app, { ...opts.recorded, machine: opts.machine, inventory: opts.inventory, tasks, insertTaskMs: opts.insertTaskMs ?? 3_000 });
    return app;
  }

  /** Registers a resource: its handlers, and a 405 naming the allowed methods for every other one. */
  const resource = (path: string, handlers: Partial<Record<(typeof METHODS)[number], Handler>>) => {
    const allow = [...Object.keys(handlers), ...('GET' in handlers ? ['HEAD'] : [])];
    for (const method of METHODS) {
      const handler = handlers[method];
      app.route({
        method,
        url: path,
        handler: async (req: FastifyRequest, reply: FastifyReply) => {
          if (!handler) throw errors.methodNotAllowed(method, req.url, allow);
          void reply.header('odata-version', '4.0').header('allow', allow.join(', '));
          const body = await handler(req);
          if (body === undefined) return reply.code(204).send();
          if (body instanceof Located) return body.send(reply);
          if (method === 'GET') {
            const etag = etagOf(body);
            // Set before the 304 too: a 304 carries the ETag a 200 would have (RFC 9110).
            void reply.header('etag', etag);
            if (req.headers['if-none-match'] === etag) return reply.code(304).send();
          }
          return reply.header('content-type', 'application/json; charset=utf-8').send(body);
        },
      });
    }
  };

  /** PATCH preconditions: If-Match must name the resource's current ETag (or *). */
  const checkIfMatch = (req: FastifyRequest, current: unknown) => {
    const ifMatch = req.headers['if-match'];
    if (ifMatch && ifMatch !== '*' && !ifMatch.split(',').map((s) => s.trim()).includes(etagOf(current))) throw errors.preconditionFailed();
  };

  resource('/redfish', { GET: () => ({ v1: '/redfish/v1/' }) });
  resource('/redfish/v1', { GET: () => res.serviceRoot() });
  resource('/redfish/v1/Systems', { GET: () => res.collection('/redfish/v1/Systems', 'ComputerSystem', 'Computer System Collection', [res.system]) });
  resource('/redfish/v1/Systems/:id', {
    GET: (req) => (systemOf(req), res.computerSystem()),
    PATCH: (req) => {
      systemOf(req);
      checkIfMatch(req, res.computerSystem());
      const body = objectBody(req);
      if (opts.machine.quirks.has('boot-in-settings') && 'Boot' in body) throw errors.propertyNotWritable('Boot');
      patchSystem(opts.machine, body, res.computerSystem());
      return undefined;
    },
  });
  resource('/redfish/v1/Systems/:id/Settings', {
    GET: (req) => (systemOf(req), settingsOnly(req), res.systemSettings()),
    PATCH: (req) => {
      systemOf(req);
      settingsOnly(req);
      checkIfMatch(req, res.systemSettings());
      patchSystem(opts.machine, objectBody(req), res.systemSettings());
      return undefined;
    },
  });
  // Secure Boot, where the server's firmware has it (lab/bmc/redfish/secure-boot.ts).
  const sbPaths = secureBootPaths('/redfish/v1/Systems/:id');
  const sb = () => {
    const setup = opts.machine.secureBoot;
    if (!setup) throw errors.notFound('SecureBoot');
    return setup;
  };
  const real = secureBootPaths(res.system);
  resource(sbPaths.secureBoot, {
    GET: (req) => (systemOf(req), secureBootBody(sb(), real)),
    PATCH: (req) => {
      systemOf(req);
      const current = secureBootBody(sb(), real);
      checkIfMatch(req, current);
      patchSecureBoot(sb(), objectBody(req), current);
      return undefined;
    },
  });
  resource(sbPaths.databases, { GET: (req) => (systemOf(req), sb(), databasesBody(real)) });
  resource(sbPaths.db, { GET: (req) => (systemOf(req), sb(), dbBody(real)) });
  resource(sbPaths.certificates, {
    GET: (req) => (systemOf(req), certificatesBody(sb(), real)),
    POST: (req) => {
      systemOf(req);
      const id = postCertificate(sb(), objectBody(req));
      return new Created(`${real.certificates}/${id}`, certificateBody(sb(), real, id));
    },
  });
  resource(`${sbPaths.certificates}/:cert`, {
    GET: (req) => (systemOf(req), found(req, certificateBody(sb(), real, (req.params as { cert: string }).cert))),
    DELETE: (req) => {
      systemOf(req);
      if (!sb().remove((req.params as { cert: string }).cert)) throw errors.notFound(req.url);
      return undefined;
    },
  });
  resource('/redfish/v1/Systems/:id/Actions/ComputerSystem.Reset', {
    POST: (req) => {
      systemOf(req);
      const body = objectBody(req);
      const action = 'ComputerSystem.Reset';
      for (const key of Object.keys(body)) if (key !== 'ResetType') throw errors.parameterUnknown(action, key);
      if (body.ResetType === undefined) throw errors.parameterMissing(action, 'ResetType');
      if (typeof body.ResetType !== 'string') throw errors.parameterType(action, 'ResetType', 'string');
      opts.machine.reset(body.ResetType);
      return undefined;
    },
  });
  resource('/redfish/v1/Systems/:id/ResetActionInfo', {
    GET: (req) => {
      systemOf(req);
      if (!opts.machine.quirks.has('reset-types-in-actioninfo')) throw errors.notFound(req.url);
      return res.resetActionInfo();
    },
  });
  resource('/redfish/v1/Systems/:id/EthernetInterfaces', {
    GET: (req) => (systemOf(req), res.collection(`${res.system}/EthernetInterfaces`, 'EthernetInterface', 'Ethernet Interface Collection', res.nicIds().map((n) => `${res.system}/EthernetInterfaces/${n}`))),
  });
  resource('/redfish/v1/Systems/:id/EthernetInterfaces/:nic', {
    GET: (req) => (systemOf(req), found(req, res.ethernetInterface((req.params as { nic: string }).nic))),
  });
  resource('/redfish/v1/Systems/:id/Storage', {
    GET: (req) => (systemOf(req), res.collection(`${res.system}/Storage`, 'Storage', 'Storage Collection', [`${res.system}/Storage/${STORAGE_ID}`])),
  });
  resource(`/redfish/v1/Systems/:id/Storage/${STORAGE_ID}`, { GET: (req) => (systemOf(req), res.storage()) });
  resource(`/redfish/v1/Systems/:id/Storage/${STORAGE_ID}/Drives/:drive`, {
    GET: (req) => (systemOf(req), found(req, res.drive((req.params as { drive: string }).drive))),
  });
  resource('/redfish/v1/Managers', { GET: () => res.collection('/redfish/v1/Managers', 'Manager', 'Manager Collection', [res.managerPath]) });
  resource(res.managerPath, { GET: () => res.managerResource() });
  resource('/redfish/v1/Chassis', { GET: () => res.collection('/redfish/v1/Chassis', 'Chassis', 'Chassis Collection', [res.chassis]) });
  resource(res.chassis, { GET: () => res.chassisResource() });

  for (const collection of [`/redfish/v1/Systems/:id/VirtualMedia`, `${res.managerPath}/VirtualMedia`]) {
    const actual = (req: FastifyRequest) => {
      const path = collection.replace(':id', (req.params as { id?: string }).id ?? '');
      if (collection.includes(':id')) systemOf(req);
      if (!res.mediaCollections().includes(path)) throw errors.notFound(req.url);
      return path;
    };
    resource(collection, { GET: (req) => res.collection(actual(req), 'VirtualMedia', 'Virtual Media Collection', res.mediaMembers(actual(req))) });
    resource(`${collection}/${KVM_MEDIA_ID}`, {
      GET: (req) => {
        if (!opts.machine.quirks.has('kvm-slot-first')) throw errors.notFound(req.url);
        return res.kvmMedia(actual(req));
      },
    });
    resource(`${collection}/${MEDIA_ID}`, {
      GET: (req) => res.virtualMedia(actual(req)),
      PATCH: async (req) => {
        checkIfMatch(req, res.virtualMedia(actual(req)));
        await patchMedia(opts.machine, objectBody(req));
        return undefined;
      },
    });
    resource(`${collection}/${MEDIA_ID}/Actions/VirtualMedia.InsertMedia`, {
      POST: async (req) => {
        actual(req);
        if (!opts.machine.quirks.has('insert-task')) {
          await insertMedia(opts.machine, objectBody(req));
          return undefined;
        }
        // insert-task: answered at once with a task; the image is attached when the task has run.
        const body = objectBody(req);
        const task = tasks.start(opts.insertTaskMs ?? 3_000, () => insertMedia(opts.machine, body));
        return new Accepted(String(task['@odata.id']), task);
      },
    });
    resource(`${collection}/${MEDIA_ID}/Actions/VirtualMedia.EjectMedia`, {
      POST: async (req) => {
        actual(req);
        for (const key of Object.keys(objectBody(req))) throw errors.parameterUnknown('VirtualMedia.EjectMedia', key);
        await opts.machine.ejectMedia();
        return undefined;
      },
    });
  }


  function settingsOnly(req: FastifyRequest): void {
    if (!opts.machine.quirks.has('boot-in-settings')) throw errors.notFound(req.url);
  }

  function systemOf(req: FastifyRequest): void {
    if ((req.params as { id?: string }).id !== opts.inventory.systemId) throw errors.notFound(req.url);
  }
  return app;
}

