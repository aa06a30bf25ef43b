// Maps every failure to a status code and a {message} body. Domain errors carry their own meaning;
// Fastify's own client errors (bad JSON, wrong content type, body too large) keep their 4xx; anything
// else is a 500 that is logged and not explained to the client.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BaseArtifactError } from '../catalog/base-artifacts.js';
import { RequestError } from '../builds/request.js';
import { QueueFullError } from '../builds/queue.js';
import { StorageError } from '../storage/errors.js';
import { CheckinRequestError } from '../checkins/checkin-request.js';

export class HttpError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
  }
}

function classify(err: FastifyError | Error): { status: number; message: string; retryAfter?: number } {
  if (err instanceof HttpError) return { status: err.statusCode, message: err.message };
  if (err instanceof RequestError || err instanceof BaseArtifactError || err instanceof CheckinRequestError) {
    return { status: 400, message: err.message };
  }
  if (err instanceof QueueFullError) return { status: 503, message: err.message, retryAfter: 5 };
  if (err instanceof StorageError) return { status: 507, message: err.message };
  const fe = err as FastifyError;
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const prefix = fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'Content-Type' : 'body';
    return { status: fe.statusCode, message: `${prefix}: ${fe.message}` };
  }
  return { status: 500, message: 'internal error; see the service log' };
}

/**
 * Errors Fastify answers before any route or error handler runs (a URL that does not decode): the
 * same {message} body, naming the URL, instead of Fastify's own error object.
 */
export function frameworkError(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  void reply.code(status).send({ message: `URL: ${err.message}` });
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const { status, message, retryAfter } = classify(err as Error);
    if (status >= 500 && status !== 503 && status !== 507) request.log.error({ err }, 'request failed');
    if (retryAfter) reply.header('Retry-After', String(retryAfter));
    return reply.code(status).send({ message });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ message: `no route for ${request.method} ${request.url.split('?')[0]?.slice(0, 200)}` }),
  );
}
