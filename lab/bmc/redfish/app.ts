// The Redfish HTTP adapter of the virtual BMC: basic auth (the service root answers without it, as
// DSP0266 requires), routes for the resources and actions, ETags on GETs and If-Match on PATCH,
// 405 with Allow for a known resource and the wrong method, and Redfish error bodies for everything.
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { MachineError, type Machine } from '../machine/machine.js';
import { errorBody, errors, fromMachineError, RedfishError } from './errors.js';
import { MEDIA_ID, Resources, STORAGE_ID, type Inventory } from './resources.js';

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
}

type Handler = (req: FastifyRequest) => Promise<unknown> | unknown;

/** What a handler returns for an action the BMC carries out later: 202 with the task to watch. */
class Accepted {
  constructor(
    readonly location: string,
    readonly body: unknown,
  ) {}
}
const METHODS = ['GET', 'POST', 'PATCH', 'PUT', 'DELETE'] as const;

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
    const auth = req.headers.authorization ?? '';
    const m = /^Basic\s+(.+)$/i.exec(auth);
    const got = m ? Buffer.from(m[1]!, 'base64') : Buffer.alloc(0);
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw errors.unauthorized();
  });

  // transient-500: every other change request is refused as iDRAC refuses them while it reloads.
  let changes = 0;
  app.addHook('preHandler', async (req) => {
    if (!opts.machine.quirks.has('transient-500') || (req.method !== 'POST' && req.method !== 'PATCH')) return;
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
          if (body instanceof Accepted) return reply.code(202).header('location', body.location).header('content-type', 'application/json; charset=utf-8').send(body.body);
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
      patchSystem(opts.machine, objectBody(req), res.computerSystem());
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
    resource(collection, { GET: (req) => res.collection(actual(req), 'VirtualMedia', 'Virtual Media Collection', [`${actual(req)}/${MEDIA_ID}`]) });
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

  resource('/redfish/v1/TaskService/Tasks/:task', { GET: (req) => found(req, tasks.get((req.params as { task: string }).task)) });

  function systemOf(req: FastifyRequest): void {
    if ((req.params as { id?: string }).id !== opts.inventory.systemId) throw errors.notFound(req.url);
  }
  return app;
}

function found<T>(req: FastifyRequest, value: T | undefined): T {
  if (value === undefined) throw errors.notFound(req.url);
  return value;
}

function objectBody(req: FastifyRequest): Record<string, unknown> {
  const body = req.body ?? {};
  if (typeof body !== 'object' || Array.isArray(body) || body === null) throw errors.malformedJson();
  return body as Record<string, unknown>;
}

const BOOT_PROPERTIES: Record<string, 'target' | 'enabled' | 'mode' | 'httpBootUri'> = {
  BootSourceOverrideTarget: 'target',
  BootSourceOverrideEnabled: 'enabled',
  BootSourceOverrideMode: 'mode',
  HttpBootUri: 'httpBootUri',
};
/** `current`: the resource as GET shows it; any property it has other than Boot is read-only. */
function patchSystem(machine: Machine, body: Record<string, unknown>, current: Record<string, unknown>): void {
  for (const key of Object.keys(body)) {
    if (key === 'Boot') continue;
    if (key.startsWith('@odata.')) continue;
    throw Object.hasOwn(current, key) ? errors.propertyNotWritable(key) : errors.propertyUnknown(key);
  }
  const boot = body.Boot;
  if (boot === undefined) return;
  if (typeof boot !== 'object' || boot === null || Array.isArray(boot)) throw errors.propertyValueType('Boot', 'object');
  const patch: Parameters<Machine['setBoot']>[0] = {};
  for (const [key, value] of Object.entries(boot)) {
    const field = BOOT_PROPERTIES[key];
    if (!field) throw errors.propertyUnknown(`Boot/${key}`);
    if (field === 'httpBootUri' ? value !== null && typeof value !== 'string' : typeof value !== 'string') {
      throw errors.propertyValueType(`Boot/${key}`, 'string');
    }
    (patch as Record<string, unknown>)[field] = value;
  }
  machine.setBoot(patch);
}

const INSERT_PARAMETERS = new Set(['Image', 'Inserted', 'WriteProtected', 'TransferMethod', 'TransferProtocolType', 'UserName', 'Password', 'MediaType']);

async function insertMedia(machine: Machine, body: Record<string, unknown>): Promise<void> {
  const action = 'VirtualMedia.InsertMedia';
  for (const key of Object.keys(body)) if (!INSERT_PARAMETERS.has(key)) throw errors.parameterUnknown(action, key);
  if (body.Image === undefined) throw errors.parameterMissing(action, 'Image');
  if (typeof body.Image !== 'string') throw errors.parameterType(action, 'Image', 'string');
  for (const key of ['Inserted', 'WriteProtected']) {
    if (body[key] !== undefined && typeof body[key] !== 'boolean') throw errors.parameterType(action, key, 'boolean');
  }
  if (machine.quirks.has('transfer-protocol-required') && body.TransferProtocolType === undefined) throw errors.parameterMissing(action, 'TransferProtocolType');
  if (body.TransferMethod !== undefined && body.TransferMethod !== 'Stream') {
    throw new MachineError('bad-value', 'this BMC streams images: TransferMethod must be "Stream"', 'TransferMethod');
  }
  await machine.insertMedia(body.Image, (body.Inserted as boolean | undefined) ?? true, (body.WriteProtected as boolean | undefined) ?? true);
}

/** PATCH of a VirtualMedia resource (what orchestrators do on BMCs without the actions). */
async function patchMedia(machine: Machine, body: Record<string, unknown>): Promise<void> {
  for (const key of Object.keys(body)) {
    if (!['Image', 'Inserted', 'WriteProtected', 'TransferMethod'].includes(key)) throw errors.propertyUnknown(key);
  }
  if (body.Image === null || body.Inserted === false) return machine.ejectMedia();
  if (body.Image === undefined) return;
  if (typeof body.Image !== 'string') throw errors.propertyValueType('Image', 'string');
  await machine.insertMedia(body.Image, true, (body.WriteProtected as boolean | undefined) ?? true);
}

function etagOf(body: unknown): string {
  return `W/"${createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16)}"`;
}

/** Tasks of actions carried out later (DSP0268 Task: TaskState, TaskStatus, Messages). */
class Tasks {
  private readonly tasks = new Map<string, { state: 'Running' | 'Completed' | 'Exception'; message: string }>();

  start(delayMs: number, work: () => Promise<void>): Record<string, unknown> {
    const id = String(this.tasks.size + 1);
    const task = { state: 'Running' as 'Running' | 'Completed' | 'Exception', message: 'The task is running.' };
    this.tasks.set(id, task);
    setTimeout(() => {
      work().then(
        () => Object.assign(task, { state: 'Completed', message: 'The task completed.' }),
        (err: unknown) => Object.assign(task, { state: 'Exception', message: err instanceof Error ? err.message : String(err) }),
      );
    }, delayMs).unref();
    return this.get(id)!;
  }

  get(id: string): Record<string, unknown> | undefined {
    const t = this.tasks.get(id);
    if (!t) return undefined;
    return {
      '@odata.id': `/redfish/v1/TaskService/Tasks/${id}`,
      '@odata.type': '#Task.v1_7_0.Task',
      Id: id,
      Name: 'Insert media',
      TaskState: t.state,
      TaskStatus: t.state === 'Exception' ? 'Critical' : 'OK',
      Messages: [{ Message: t.message }],
    };
  }
}
