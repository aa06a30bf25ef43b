// /api/v1/builds: submit, inspect, list and delete builds. Each handler parses, calls one registry
// method and maps the outcome to a status code.
import type { FastifyInstance } from 'fastify';
import type { BuildRecord, BuildRegistry } from '../../builds/registry.js';
import { normalizeBuildRequest } from '../../builds/request.js';
import type { PublicUrls } from '../urls.js';
import type { DeliveryTracker, FileDelivery } from '../../delivery/tracker.js';
import { HttpError } from '../errors.js';

export interface BuildStatus {
  id: string;
  state: BuildRecord['state'];
  createdAt: string;
  completedAt?: string;
  error?: string;
  artifacts?: { ukiUrl: string; isoUrl: string };
  measurements?: BuildRecord['measurements'];
  /** What the artifacts' readers did (single build status only: the list is cached per record). */
  delivery?: { uki: FileDelivery; iso: FileDelivery };
}

export function buildStatus(record: BuildRecord, urls: PublicUrls): BuildStatus {
  const status: BuildStatus = { id: record.id, state: record.state, createdAt: record.createdAt };
  if (record.completedAt) status.completedAt = record.completedAt;
  if (record.error) status.error = record.error;
  if (record.state === 'completed') status.artifacts = urls.artifacts(record);
  if (record.state === 'completed' && record.measurements) status.measurements = record.measurements;
  return status;
}

export function buildRoutes(app: FastifyInstance, deps: { registry: BuildRegistry; urls: PublicUrls; maxFiles: number; delivery: DeliveryTracker }): void {
  const { registry, urls } = deps;

  app.post('/api/v1/builds', async (request, reply) => {
    const normalized = normalizeBuildRequest(request.body, { maxFiles: deps.maxFiles });
    if (normalized.tlsArtifacts && !urls.hasTls) {
      throw new HttpError(400, 'tlsArtifacts: the service has no TLS listener (start it with --tls-listen, --tls-cert, --tls-key)');
    }
    const record = await registry.submit(normalized);
    const statusUrl = urls.buildStatus(record.id);
    return reply.code(202).header('Location', statusUrl).send({ id: record.id, statusUrl });
  });

  // With thousands of builds, serializing the list dominates. Records are replaced, never mutated, so
  // each one's JSON is kept per record object, and the whole body while the sequence is unchanged.
  const recordJson = new WeakMap<BuildRecord, string>();
  let cached: { records: BuildRecord[]; body: Buffer } | null = null;
  app.get('/api/v1/builds', async (_request, reply) => {
    const records = registry.list();
    const same = cached !== null && cached.records.length === records.length && records.every((r, i) => r === cached!.records[i]);
    if (!same) {
      const parts = records.map((r) => {
        let json = recordJson.get(r);
        if (json === undefined) {
          json = JSON.stringify(buildStatus(r, urls));
          recordJson.set(r, json);
        }
        return json;
      });
      cached = { records, body: Buffer.from(`[${parts.join(',')}]`) };
    }
    return reply.type('application/json; charset=utf-8').send(cached!.body);
  });

  app.delete('/api/v1/builds', async (_request, reply) => {
    await registry.purge();
    return reply.code(204).send();
  });

  app.get<{ Params: { id: string } }>('/api/v1/builds/:id', async (request) => {
    const record = registry.get(request.params.id);
    if (!record) throw notFound(request.params.id);
    const status = buildStatus(record, urls);
    if (record.state === 'completed' && record.artifacts) {
      status.delivery = deps.delivery.view(record.id, record.artifacts);
    }
    return status;
  });

  app.delete<{ Params: { id: string } }>('/api/v1/builds/:id', async (request, reply) => {
    if (!(await registry.delete(request.params.id))) throw notFound(request.params.id);
    return reply.code(204).send();
  });
}

function notFound(id: string): HttpError {
  return new HttpError(404, `build "${id.slice(0, 80)}" not found`);
}
