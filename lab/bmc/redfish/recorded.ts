// The Redfish resources of a profiled BMC: the recording's tree served as recorded, with the live
// state of the machine model laid over the resources that change (the System's power and boot
// override, the VirtualMedia slots, Bios and its pending settings), and the recording's own action
// targets, AllowableValues, ActionInfo and ETag format deciding what is accepted.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FirmwareError, type Attributes } from '../machine/firmware.js';
import type { Machine } from '../machine/machine.js';
import { RESET_TYPES, type ResetType } from '../machine/types.js';
import type { BmcProfile } from '../profiles/profiles.js';
import { dig, linkOf, pathKey, type Recording, type Resource } from '../profiles/recording.js';
import { Accepted, Created, etagOf, Located, insertMedia, METHODS, objectBody, patchMedia, type Handler, type Tasks } from './actions.js';
import { errors, RedfishError } from './errors.js';
import { certificateBody, certificatesBody, patchSecureBoot, postCertificate, secureBootBody } from './secure-boot.js';
import { imageName, type Inventory } from './resources.js';

export interface RecordedOptions {
  recording: Recording;
  profile: BmcProfile;
  machine: Machine;
  inventory: Inventory;
  tasks: Tasks;
  insertTaskMs: number;
}

type Live = Partial<Record<(typeof METHODS)[number], Handler>>;

interface Slot {
  path: string;
  /** the slot's Id with aliases resolved: two paths with one id are one drive */
  id: string;
  role: 'cd' | 'other' | 'unusable';
  insertTarget?: string;
  ejectTarget?: string;
}

const CD_TYPES = ['CD', 'DVD'];

/** The paths a profiled System is known by, read from its recording. */
export function recordedLayout(rec: Recording, profile: BmcProfile) {
  const systemPath = rec.first('/redfish/v1/Systems', 'ComputerSystem');
  const system = rec.get(systemPath)!;
  const managers = rec.members('/redfish/v1/Managers').filter((m) => rec.has(m));
  const collections = [linkOf(system, 'VirtualMedia'), ...managers.map((m) => linkOf(rec.get(m), 'VirtualMedia'))].filter(
    (c): c is string => c !== undefined && rec.has(c),
  );
  const slots: Slot[] = [];
  for (const collection of collections) {
    for (const path of rec.members(collection)) {
      const slot = rec.get(path);
      if (!slot) continue;
      const rawId = String(slot.Id ?? path.split('/').pop());
      const id = profile.slotAliases[rawId] ?? rawId;
      const types = (slot.MediaTypes as string[] | undefined) ?? [];
      const role = profile.unusableSlots?.test(id) ? 'unusable' : types.some((t) => CD_TYPES.includes(t)) ? 'cd' : 'other';
      const s: Slot = { path, id, role };
      const insert = dig(slot, 'Actions', '#VirtualMedia.InsertMedia', 'target');
      const eject = dig(slot, 'Actions', '#VirtualMedia.EjectMedia', 'target');
      if (typeof insert === 'string') s.insertTarget = insert;
      if (typeof eject === 'string') s.ejectTarget = eject;
      slots.push(s);
    }
  }
  const biosPath = linkOf(system, 'Bios');
  const bios = biosPath ? rec.get(biosPath) : undefined;
  const biosSettingsPath = bios ? linkOf(bios, '@Redfish.Settings', 'SettingsObject') : undefined;
  return { systemPath, slots, biosPath: bios ? biosPath : undefined, biosAttributes: (bios?.Attributes ?? {}) as Attributes, biosSettingsPath };
}

/** The reset types the recording lists: the action's AllowableValues, else its ActionInfo's. */
export function recordedResetTypes(rec: Recording, systemPath: string): string[] {
  const action = dig(rec.get(systemPath), 'Actions', '#ComputerSystem.Reset') as Resource | undefined;
  const listed = action?.['ResetType@Redfish.AllowableValues'];
  if (Array.isArray(listed)) return listed as string[];
  const info = typeof action?.['@Redfish.ActionInfo'] === 'string' ? rec.get(action['@Redfish.ActionInfo']) : undefined;
  const param = ((info?.Parameters as Resource[] | undefined) ?? []).find((p) => p.Name === 'ResetType');
  return (param?.AllowableValues as string[] | undefined) ?? [...RESET_TYPES];
}

/** The machine's reset types: what the recording lists that the model can carry out. */
export function modelledResetTypes(rec: Recording, systemPath: string): ResetType[] {
  const listed = recordedResetTypes(rec, systemPath);
  return RESET_TYPES.filter((t) => listed.includes(t));
}

export function registerRecordedRoutes(app: FastifyInstance, o: RecordedOptions): void {
  const { recording: rec, machine, profile } = o;
  const layout = recordedLayout(rec, profile);
  const weak = rec.weakEtags();
  const live = new Map<string, Live>();
  const quirk = (q: Parameters<typeof machine.quirks.has>[0]) => machine.quirks.has(q);

  // --- the System: power, boot override, identity -------------------------------------------
  const recordedBoot = () => (rec.get(layout.systemPath)?.Boot ?? {}) as Resource;
  const systemBody = () => {
    const s = rec.get(layout.systemPath)!;
    const b = machine.bootOverride;
    s.PowerState = machine.powerState;
    s.UUID = o.inventory.uuid;
    s.SerialNumber = o.inventory.serialNumber;
    s.Boot = { ...recordedBoot(), BootSourceOverrideTarget: b.target, BootSourceOverrideEnabled: b.enabled, BootSourceOverrideMode: b.mode };
    return s;
  };
  live.set(pathKey(layout.systemPath), {
    GET: systemBody,
    PATCH: (req) => {
      const body = objectBody(req);
      const current = systemBody();
      checkIfMatch(req, current);
      for (const key of Object.keys(body)) {
        if (key === 'Boot' || key.startsWith('@odata.')) continue;
        throw Object.hasOwn(current, key) ? errors.propertyNotWritable(key) : errors.propertyUnknown(key);
      }
      const boot = body.Boot;
      if (boot === undefined) return undefined;
      if (typeof boot !== 'object' || boot === null || Array.isArray(boot)) throw errors.propertyValueType('Boot', 'object');
      const recorded = recordedBoot();
      const fields = { BootSourceOverrideTarget: 'target', BootSourceOverrideEnabled: 'enabled', BootSourceOverrideMode: 'mode' } as const;
      const patch: Record<string, string> = {};
      for (const [key, value] of Object.entries(boot as Resource)) {
        if (!(key in fields)) throw Object.hasOwn(recorded, key) ? errors.notModelled(`a change of Boot/${key}`) : errors.propertyUnknown(`Boot/${key}`);
        if (typeof value !== 'string') throw errors.propertyValueType(`Boot/${key}`, 'string');
        const allowed = recorded[`${key}@Redfish.AllowableValues`];
        if (Array.isArray(allowed) && !allowed.includes(value)) throw errors.propertyValueNotInList(`Boot/${key}`, value, allowed);
        patch[fields[key as keyof typeof fields]] = value;
      }
      machine.setBoot(patch);
      return undefined;
    },
  });

  const resetTarget = dig(rec.get(layout.systemPath), 'Actions', '#ComputerSystem.Reset', 'target');
  if (typeof resetTarget === 'string') {
    const listed = recordedResetTypes(rec, layout.systemPath);
    live.set(pathKey(resetTarget), {
      POST: (req) => {
        const body = objectBody(req);
        const action = 'ComputerSystem.Reset';
        for (const key of Object.keys(body)) if (key !== 'ResetType') throw errors.parameterUnknown(action, key);
        if (body.ResetType === undefined) throw errors.parameterMissing(action, 'ResetType');
        if (typeof body.ResetType !== 'string') throw errors.parameterType(action, 'ResetType', 'string');
        if (!listed.includes(body.ResetType)) throw errors.actionValueNotInList(action, 'ResetType', body.ResetType, listed);
        if (!(machine.allowedResetTypes() as string[]).includes(body.ResetType)) throw errors.notModelled(`ResetType ${body.ResetType}`);
        machine.reset(body.ResetType);
        return undefined;
      },
    });
  }

  // --- VirtualMedia: every CD slot is the server's one virtual CD drive -----------------------
  // The slot holding the media: the one it was inserted through, else (inserted by the lab itself,
  // without Redfish) the first CD slot.
  let insertedThrough: string | null = null;
  const firstCd = layout.slots.find((x) => x.role === 'cd')?.id ?? null;
  const holder = () => insertedThrough ?? firstCd;
  const slotBody = (slot: Slot) => {
    const body = rec.get(slot.path)!;
    if (slot.role !== 'cd') return body;
    const m = machine.mediaSlot;
    const mine = holder() === slot.id && (m.inserted || m.image !== null);
    const last = quirk('imagename-after-eject') && holder() === slot.id ? machine.lastImage : null;
    Object.assign(body, {
      Image: mine ? m.image : null,
      ImageName: mine && m.image ? imageName(m.image) : last ? imageName(last) : null,
      Inserted: mine ? m.inserted : false,
      WriteProtected: true,
      ConnectedVia: mine && m.inserted ? 'URI' : 'NotConnected',
    });
    if ('TransferProtocolType' in body) body.TransferProtocolType = mine && m.image ? (m.image.startsWith('https:') ? 'HTTPS' : 'HTTP') : null;
    return body;
  };
  const claim = (slot: Slot) => {
    if (slot.role === 'unusable') throw errors.notModelled(`media in slot ${slot.id} (it holds files uploaded to the BMC)`);
    if (slot.role !== 'cd') throw errors.notModelled(`media in slot ${slot.id}: its media types are not CD or DVD`);
    if (holder() !== slot.id && machine.mediaSlot.inserted) {
      throw new RedfishError(409, 'Base.1.15.ResourceInUse', `the virtual CD drive is in use by slot ${holder()}; eject it there first`);
    }
  };
  for (const slot of layout.slots) {
    const patchable = slot.role !== 'unusable' && !slot.insertTarget;
    live.set(pathKey(slot.path), {
      GET: () => slotBody(slot),
      // Slots without actions take their media by PATCH (Lenovo XCC).
      ...(patchable
        ? {
            PATCH: async (req: FastifyRequest) => {
              checkIfMatch(req, slotBody(slot));
              const body = objectBody(req);
              const ejecting = body.Image === null || body.Inserted === false;
              if (!ejecting) claim(slot);
              else if (holder() !== slot.id) return undefined;
              await patchMedia(machine, body);
              if (!ejecting && body.Image !== undefined) insertedThrough = slot.id;
              return undefined;
            },
          }
        : {}),
    });
    if (slot.insertTarget) {
      live.set(pathKey(slot.insertTarget), {
        POST: async (req) => {
          claim(slot);
          const body = objectBody(req);
          if (!quirk('insert-task')) {
            await insertMedia(machine, body);
            insertedThrough = slot.id;
            return undefined;
          }
          const task = o.tasks.start(o.insertTaskMs, async () => {
            await insertMedia(machine, body);
            insertedThrough = slot.id;
          });
          return new Accepted(String(task['@odata.id']), task);
        },
      });
    }
    if (slot.ejectTarget) {
      live.set(pathKey(slot.ejectTarget), {
        POST: async (req) => {
          for (const key of Object.keys(objectBody(req))) throw errors.parameterUnknown('VirtualMedia.EjectMedia', key);
          if (slot.role === 'cd' && holder() === slot.id) await machine.ejectMedia();
          return undefined;
        },
      });
    }
  }

  // --- Bios and its pending settings (applied by the machine at the next power-on) ------------
  const firmware = machine.firmware;
  if (layout.biosPath && firmware) {
    live.set(pathKey(layout.biosPath), {
      GET: () => ({ ...rec.get(layout.biosPath!)!, Attributes: { ...firmware.attributes } }),
    });
    if (layout.biosSettingsPath) {
      const settingsBody = () => ({ ...(rec.get(layout.biosSettingsPath!) ?? { '@odata.id': layout.biosSettingsPath, Id: 'Settings' }), Attributes: { ...firmware.pendingAttributes } });
      live.set(pathKey(layout.biosSettingsPath), {
        GET: settingsBody,
        PATCH: (req) => {
          checkIfMatch(req, settingsBody());
          const body = objectBody(req);
          for (const key of Object.keys(body)) {
            if (key !== 'Attributes' && key !== '@Redfish.SettingsApplyTime') throw errors.propertyUnknown(key);
          }
          const attributes = body.Attributes;
          if (typeof attributes !== 'object' || attributes === null || Array.isArray(attributes)) throw errors.propertyValueType('Attributes', 'object');
          const applyTime = dig(body, '@Redfish.SettingsApplyTime', 'ApplyTime');
          const supported = (dig(rec.get(layout.biosPath!), '@Redfish.Settings', 'SupportedApplyTimes') as string[] | undefined) ?? [];
          if (applyTime !== undefined && !supported.includes(String(applyTime))) {
            throw errors.propertyValueNotInList('@Redfish.SettingsApplyTime/ApplyTime', applyTime, supported.length ? supported : ['(none: this BMC applies at reset)']);
          }
          try {
            firmware.stage(attributes as Attributes, applyTime === 'OnReset' || !quirk('bios-job-required'));
          } catch (err) {
            if (err instanceof FirmwareError) throw new RedfishError(400, 'Base.1.15.PropertyValueError', err.message, [`#/Attributes/${err.attribute}`]);
            throw err;
          }
          return undefined;
        },
      });
    }
  }

  // --- Secure Boot, where the recording has it and the server's firmware does ------------------
  const sbPath = linkOf(rec.get(layout.systemPath), 'SecureBoot');
  const sb = machine.secureBoot;
  const dynamic: ((key: string) => Live | undefined)[] = [];
  if (sbPath && sb && rec.has(sbPath)) {
    const databases = linkOf(rec.get(sbPath), 'SecureBootDatabases');
    const p = { secureBoot: sbPath, databases: databases ?? `${sbPath}/SecureBootDatabases`, db: `${databases}/db`, certificates: `${databases}/db/Certificates` };
    const hasDb = databases !== undefined && rec.has(p.certificates);
    const body = () => secureBootBody(sb, p, rec.get(sbPath), hasDb);
    live.set(pathKey(sbPath), {
      GET: body,
      PATCH: (req) => {
        checkIfMatch(req, body());
        patchSecureBoot(sb, objectBody(req), body());
        return undefined;
      },
    });
    if (hasDb) {
      live.set(pathKey(p.certificates), {
        GET: () => certificatesBody(sb, p, rec.get(p.certificates)),
        POST: (req) => {
          const id = postCertificate(sb, objectBody(req));
          return new Created(`${p.certificates}/${id}`, certificateBody(sb, p, id));
        },
      });
      const prefix = pathKey(p.certificates) + '/';
      dynamic.push((key) => {
        if (!key.startsWith(prefix)) return undefined;
        const id = key.slice(prefix.length);
        if (!certificateBody(sb, p, id)) return undefined;
        return { GET: () => certificateBody(sb, p, id), DELETE: () => (sb.remove(id), undefined) };
      });
    }
  }

  /** PATCH preconditions, with the profile's strictness (if-match-required: 428 without, 412 weak). */
  function checkIfMatch(req: FastifyRequest, current: unknown): void {
    const ifMatch = req.headers['if-match'];
    if (!ifMatch) {
      if (quirk('if-match-required')) throw errors.preconditionRequired();
      return;
    }
    if (ifMatch === '*') return;
    const strong = etagOf(current, false);
    const sent = ifMatch.split(',').map((s) => s.trim());
    const ok = quirk('if-match-required') ? sent.includes(strong) : sent.some((s) => s.replace(/^W\//, '') === strong);
    if (!ok) throw errors.preconditionFailed();
  }

  const handle = async (req: FastifyRequest, reply: FastifyReply) => {
    const key = pathKey(req.url);
    const entry = live.get(key) ?? dynamic.map((d) => d(key)).find((e) => e !== undefined);
    const recorded = rec.has(key);
    if (!entry && !recorded) throw errors.notFound(req.url);
    const methods = entry ? Object.keys(entry) : [];
    if (!entry?.GET && recorded) methods.unshift('GET');
    const allow = [...methods, ...(methods.includes('GET') ? ['HEAD'] : [])];
    const method = req.method === 'HEAD' ? 'GET' : (req.method as (typeof METHODS)[number]);
    void reply.header('odata-version', '4.0').header('allow', allow.join(', '));
    if (method === 'GET') {
      const body = entry?.GET ? ((await entry.GET(req)) as Resource) : rec.get(key)!;
      const etag = etagOf(body, weak);
      if ('@odata.etag' in body) body['@odata.etag'] = etag;
      void reply.header('etag', etag);
      if (req.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.header('content-type', 'application/json; charset=utf-8').send(body);
    }
    const handler = entry?.[method];
    if (!handler) throw errors.methodNotAllowed(req.method, req.url, allow);
    const result = await handler(req);
    if (result === undefined) return reply.code(204).send();
    if (result instanceof Located) return result.send(reply);
    return reply.header('content-type', 'application/json; charset=utf-8').send(result);
  };
  app.route({ method: [...METHODS, 'HEAD'], url: '/redfish', handler: async (_req, reply) => reply.header('content-type', 'application/json; charset=utf-8').send({ v1: '/redfish/v1/' }) });
  app.route({ method: [...METHODS], url: '/redfish/*', handler: handle, exposeHeadRoute: true });
}

