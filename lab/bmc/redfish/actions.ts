// What the Redfish adapter does with a request body, shared by the standard resources and the
// recorded ones: body checks, Boot and VirtualMedia changes handed to the machine model, ETags, and
// tasks for actions carried out later.
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MachineError, type Machine } from '../machine/machine.js';
import { errors, RedfishError } from './errors.js';

export type Handler = (req: FastifyRequest) => Promise<unknown> | unknown;
export const METHODS = ['GET', 'POST', 'PATCH', 'PUT', 'DELETE'] as const;

/** What a handler returns when the answer names another resource: its status, Location and body. */
export abstract class Located {
  abstract readonly status: 201 | 202;
  constructor(
    readonly location: string,
    readonly body: unknown,
  ) {}

  send(reply: FastifyReply): FastifyReply {
    return reply.code(this.status).header('location', this.location).header('content-type', 'application/json; charset=utf-8').send(this.body);
  }
}

/** A resource the handler made: 201. */
export class Created extends Located {
  readonly status = 201;
}

/** An action the BMC carries out later: 202 with the task to watch. */
export class Accepted extends Located {
  readonly status = 202;
}

export function found<T>(req: FastifyRequest, value: T | undefined): T {
  if (value === undefined) throw errors.notFound(req.url);
  return value;
}

export function objectBody(req: FastifyRequest): Record<string, unknown> {
  const body = req.body ?? {};
  if (typeof body !== 'object' || Array.isArray(body) || body === null) throw errors.malformedJson();
  return body as Record<string, unknown>;
}

export const BOOT_PROPERTIES: Record<string, 'target' | 'enabled' | 'mode' | 'httpBootUri'> = {
  BootSourceOverrideTarget: 'target',
  BootSourceOverrideEnabled: 'enabled',
  BootSourceOverrideMode: 'mode',
  HttpBootUri: 'httpBootUri',
};
/** `current`: the resource as GET shows it; any property it has other than Boot is read-only. */
export function patchSystem(machine: Machine, body: Record<string, unknown>, current: Record<string, unknown>): void {
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

export const INSERT_PARAMETERS = new Set(['Image', 'Inserted', 'WriteProtected', 'TransferMethod', 'TransferProtocolType', 'UserName', 'Password', 'MediaType']);

/** media-licence-required: what iLO answers without its Advanced licence. */
function refuseWithoutLicence(machine: Machine): void {
  if (machine.quirks.has('media-licence-required')) {
    throw new RedfishError(400, 'iLO.2.14.LicenseKeyRequired', 'A license key is required to use virtual media: install an iLO Advanced license.');
  }
}

export async function insertMedia(machine: Machine, body: Record<string, unknown>): Promise<void> {
  refuseWithoutLicence(machine);
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
export async function patchMedia(machine: Machine, body: Record<string, unknown>): Promise<void> {
  for (const key of Object.keys(body)) {
    if (!['Image', 'Inserted', 'WriteProtected', 'TransferMethod'].includes(key)) throw errors.propertyUnknown(key);
  }
  if (body.Image === null || body.Inserted === false) return machine.ejectMedia();
  if (body.Image === undefined) return;
  refuseWithoutLicence(machine);
  if (typeof body.Image !== 'string') throw errors.propertyValueType('Image', 'string');
  await machine.insertMedia(body.Image, true, (body.WriteProtected as boolean | undefined) ?? true);
}

/** The ETag of a resource body (its @odata.etag aside): weak W/"..." or strong "...". */
export function etagOf(body: unknown, weak = true): string {
  const { ['@odata.etag']: _, ...rest } = (body ?? {}) as Record<string, unknown>;
  const tag = `"${createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16)}"`;
  return weak ? `W/${tag}` : tag;
}

/** Tasks of actions carried out later (DSP0268 Task: TaskState, TaskStatus, Messages). */
export class Tasks {
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
