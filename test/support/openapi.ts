// Validates API responses against openapi.yaml, so the document and the service cannot drift apart.
import fs from 'node:fs';
import path from 'node:path';
import AjvModule from 'ajv';
import addFormatsModule from 'ajv-formats';
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

/** Throws unless `status` is documented for the operation and `body` matches its JSON schema. */
export function assertMatchesSpec(route: string, method: string, status: number, body: unknown): void {
  const operation = doc.paths?.[route]?.[method.toLowerCase()];
  if (!operation) throw new Error(`openapi.yaml has no ${method} ${route}`);
  const response = operation.responses?.[String(status)];
  if (!response) throw new Error(`openapi.yaml does not document ${status} for ${method} ${route}`);
  const resolved = response.$ref ? doc.components.responses[response.$ref.split('/').pop()] : response;
  const schema = resolved.content?.['application/json']?.schema;
  if (!schema) return; // no JSON body documented (204, text/plain, binary)
  const pointer = `openapi#/paths/${route.replace(/~/g, '~0').replace(/\//g, '~1')}/${method.toLowerCase()}/responses/${status}`;
  const validate = response.$ref
    ? ajv.getSchema(`openapi#/components/responses/${response.$ref.split('/').pop()}/content/application~1json/schema`)
    : ajv.getSchema(`${pointer}/content/application~1json/schema`);
  if (!validate) throw new Error(`cannot compile schema for ${method} ${route} ${status}`);
  if (!validate(body)) {
    throw new Error(`${method} ${route} ${status} body does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body).slice(0, 500)}`);
  }
}
