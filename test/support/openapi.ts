// Checks API responses against openapi.yaml, so the document and the service cannot drift apart: the
// status must be documented for the operation, the Content-Type must be one the response documents
// (or none, when it documents no content), required headers must be present and every documented
// header must match its schema, and the body must match its schema. `checkEveryResponse` applies
// this to every response a test file receives.
import diagnosticsChannel from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import AjvModule, { type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, expect } from 'vitest';
import YAML from 'yaml';
import { REPO } from './service.js';

const doc = YAML.parse(fs.readFileSync(path.join(REPO, 'openapi.yaml'), 'utf8'));
// Both packages are CommonJS with a default export; under NodeNext the class sits on .default.
const Ajv = AjvModule.default;
const addFormats = addFormatsModule.default;
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ ...doc, $id: 'openapi' });

export const openapiDocument = doc;

const escapePointer = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
/** The object at a JSON pointer ("/a/b") into the document. */
const at = (pointer: string): any =>
  pointer.split('/').slice(1).reduce((node, part) => node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
/** Follows a local $ref, returning the pointer of the object it names. */
const deref = (pointer: string): string => {
  const ref = at(pointer)?.$ref as string | undefined;
  return ref ? ref.slice(1) : pointer;
};
const validatorAt = (pointer: string): ValidateFunction => {
  const validate = ajv.getSchema(`openapi#${pointer}`);
  if (!validate) throw new Error(`cannot compile the schema at ${pointer}`);
  return validate;
};

const TEMPLATES = Object.keys(doc.paths).map((template) => ({
  template,
  pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`),
}));

interface Operation {
  /** Pointer to the responses object that describes this request. */
  responses: string;
  /** "GET /api/v1/builds/{id}", or the rule that stood in for a missing operation. */
  label: string;
  /** HEAD: the responses of the GET, without a body. */
  bodiless: boolean;
}

/**
 * The responses that describe `method` on `template` (a path of the document, or undefined for a path
 * it lacks): the operation itself; for HEAD without its own, the GET's (as the document's description
 * says); else the path's x-other-methods; else the document's x-unlisted-routes.
 */
function operationFor(template: string | undefined, method: string): Operation {
  const m = method.toLowerCase();
  const bodiless = m === 'head';
  if (template !== undefined) {
    const item = `/paths/${escapePointer(template)}`;
    for (const [key, label] of [
      [m, `${method.toUpperCase()} ${template}`],
      ...(bodiless ? [['get', `HEAD ${template} (as GET)`]] : []),
      ['x-other-methods', `${method.toUpperCase()} ${template} (x-other-methods)`],
    ] as const) {
      if (at(`${item}/${key}/responses`)) return { responses: `${item}/${key}/responses`, label, bodiless };
    }
  }
  return { responses: '/x-unlisted-routes/responses', label: `${method.toUpperCase()} ${template ?? 'unlisted path'} (x-unlisted-routes)`, bodiless };
}

function documentedResponse(op: Operation, status: number): string {
  const pointer = `${op.responses}/${status}`;
  if (!at(pointer)) {
    throw new Error(`openapi.yaml does not document ${status} for ${op.label} (documented: ${Object.keys(at(op.responses)).join(', ')})`);
  }
  return deref(pointer);
}

/** Throws unless `status` is documented for the operation and `body` matches its JSON schema. */
export function assertMatchesSpec(route: string, method: string, status: number, body: unknown): void {
  if (!doc.paths[route]) throw new Error(`openapi.yaml has no path ${route}`);
  const response = documentedResponse(operationFor(route, method), status);
  const schema = `${response}/content/application~1json/schema`;
  if (!at(schema)) return; // no JSON body documented (204, text/plain, binary)
  const validate = validatorAt(schema);
  if (!validate(body)) {
    throw new Error(`${method} ${route} ${status} body does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
  }
}

export interface ObservedResponse {
  status: number;
  /** Lower-case names, as undici reports them. */
  headers: Record<string, string | string[] | undefined>;
  /** The body, or its first bytes when `bodyLength` says how long it was. */
  body: Buffer;
  bodyLength?: number;
}

/** The document's path for a request path (query string ignored), or undefined. */
function templateFor(requestPath: string): string | undefined {
  const p = requestPath.split('?', 1)[0] as string;
  return TEMPLATES.find((t) => t.pattern.test(p))?.template;
}

/**
 * Checks a whole response to `method` `requestPath` against the document. Returns the label of what
 * described it ("GET /healthz 200"); throws, naming every mismatch, when the document does not
 * describe it.
 */
export function assertResponseMatchesSpec(method: string, requestPath: string, res: ObservedResponse): string {
  const op = operationFor(templateFor(requestPath), method);
  const where = `${method.toUpperCase()} ${requestPath.slice(0, 120)} → ${res.status} (${op.label})`;
  const response = documentedResponse(op, res.status);
  const problems: string[] = [];
  const header = (name: string) => {
    const v = res.headers[name.toLowerCase()];
    return Array.isArray(v) ? v.join(', ') : v;
  };

  for (const [name, declared] of Object.entries<any>(at(`${response}/headers`) ?? {})) {
    const h = declared.$ref ? at(declared.$ref.slice(1)) : declared;
    const value = header(name);
    if (value === undefined) {
      if (h.required) problems.push(`required header ${name} is missing`);
      continue;
    }
    const numeric = h.schema?.type === 'integer' || h.schema?.type === 'number';
    if (numeric && !/^\d+$/.test(value)) {
      problems.push(`header ${name}: ${JSON.stringify(value)} is not a number`);
      continue;
    }
    const validate = ajv.compile(h.schema ?? {});
    if (!validate(numeric ? Number(value) : value)) problems.push(`header ${name}: ${JSON.stringify(value)}: ${ajv.errorsText(validate.errors, { dataVar: 'value' })}`);
  }

  const content = at(`${response}/content`) as Record<string, { schema?: unknown }> | undefined;
  const contentType = header('content-type');
  const mediaType = contentType?.split(';', 1)[0]?.trim().toLowerCase();
  const length = res.bodyLength ?? res.body.length;
  if (!content) {
    if (contentType !== undefined) problems.push(`Content-Type ${contentType}, but the response documents no content`);
    if (length !== 0) problems.push(`a ${length}-byte body, but the response documents no content`);
  } else if (mediaType === undefined || !(mediaType in content)) {
    problems.push(`Content-Type ${contentType ?? '(none)'} is not one of ${Object.keys(content).join(', ')}`);
  } else if (op.bodiless) {
    if (length !== 0) problems.push(`HEAD answered with a ${length}-byte body`);
  } else {
    const schemaPointer = `${response}/content/${escapePointer(mediaType)}/schema`;
    const schema = at(schemaPointer);
    if (schema?.format === 'binary') {
      const declared = header('content-length');
      if (declared !== undefined && Number(declared) !== length) problems.push(`Content-Length ${declared}, but ${length} bytes arrived`);
    } else if (schema) {
      let body: unknown = res.body.toString('utf8');
      if (length !== res.body.length) {
        problems.push(`the body was not captured whole (${res.body.length} of ${length} bytes)`);
      } else if (mediaType === 'application/json') {
        try {
          body = JSON.parse(body as string);
        } catch {
          problems.push(`body is not JSON: ${JSON.stringify((body as string).slice(0, 200))}`);
          body = undefined;
        }
      }
      const validate = validatorAt(schemaPointer);
      if (body !== undefined && !validate(body)) problems.push(`${ajv.errorsText(validate.errors, { dataVar: 'body' })}: ${JSON.stringify(body).slice(0, 300)}`);
    }
  }
  if (problems.length) throw new Error(`${where} does not match openapi.yaml:\n  ${problems.join('\n  ')}`);
  return `${op.label} ${res.status}`;
}

/** Bytes of each body kept for checking; longer bodies are binary downloads, checked by length. */
const BODY_CAPTURE = 1024 * 1024;

/**
 * Checks every response the calling test file receives over undici (any dispatcher, any listener)
 * against the document, and fails the file in afterAll when one is not described. Returns the labels
 * of the responses checked so far, so a test can assert which ones were seen.
 */
export function checkEveryResponse(): { checked: string[] } {
  const checked: string[] = [];
  const violations: string[] = [];
  interface InFlight { method: string; path: string; status?: number; headers: Record<string, string | string[]>; chunks: Buffer[]; captured: number; length: number }
  const inFlight = new WeakMap<object, InFlight>();
  type Message = { request: { method: string; path: string } };
  const onCreate = (m: unknown) => {
    const { request } = m as Message;
    inFlight.set(request, { method: request.method, path: request.path, headers: {}, chunks: [], captured: 0, length: 0 });
  };
  const onHeaders = (m: unknown) => {
    const { request, response } = m as Message & { response: { statusCode: number; headers: Buffer[] } };
    const r = inFlight.get(request);
    if (!r) return;
    r.status = response.statusCode;
    for (let i = 0; i + 1 < response.headers.length; i += 2) {
      const name = (response.headers[i] as Buffer).toString('latin1').toLowerCase();
      const value = (response.headers[i + 1] as Buffer).toString('latin1');
      const prior = r.headers[name];
      r.headers[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value];
    }
  };
  const onChunk = (m: unknown) => {
    const { request, chunk } = m as Message & { chunk: Buffer };
    const r = inFlight.get(request);
    if (!r) return;
    r.length += chunk.length;
    if (r.captured < BODY_CAPTURE) {
      const kept = chunk.subarray(0, BODY_CAPTURE - r.captured);
      r.chunks.push(Buffer.from(kept));
      r.captured += kept.length;
    }
  };
  const onComplete = (m: unknown) => {
    const { request } = m as Message;
    const r = inFlight.get(request);
    inFlight.delete(request);
    if (!r || r.status === undefined) return;
    try {
      checked.push(assertResponseMatchesSpec(r.method, r.path, { status: r.status, headers: r.headers, body: Buffer.concat(r.chunks), bodyLength: r.length }));
    } catch (err) {
      violations.push((err as Error).message);
    }
  };
  const subscriptions: Array<[string, (m: unknown) => void]> = [
    ['undici:request:create', onCreate],
    ['undici:request:headers', onHeaders],
    ['undici:request:bodyChunkReceived', onChunk],
    ['undici:request:trailers', onComplete],
  ];
  beforeAll(() => {
    for (const [name, fn] of subscriptions) diagnosticsChannel.subscribe(name, fn);
  });
  afterAll(() => {
    for (const [name, fn] of subscriptions) diagnosticsChannel.unsubscribe(name, fn);
    expect(checked.length, 'responses checked against openapi.yaml').toBeGreaterThan(0);
    expect(violations).toEqual([]);
  });
  return { checked };
}
