// The HTTP adapter: one Fastify app per listener (plain and TLS share every route and the ACL), with the
// artifact path short-circuited to ArtifactServer before Fastify's routing.
import http from 'node:http';
import https from 'node:https';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BuildRegistry } from '../builds/registry.js';
import type { CheckinRegistry } from '../checkins/registry.js';
import type { Metrics } from '../metrics.js';
import type { AccessPolicy } from './acl.js';
import { ArtifactServer } from './artifacts.js';
import { frameworkError, installErrorHandling } from './errors.js';
import { buildRoutes } from './routes/builds.js';
import { checkinRoutes } from './routes/checkins.js';
import { systemRoutes } from './routes/system.js';
import { statusRoutes, type EventStreams } from './routes/status.js';
import type { SecureBootSigner } from '../image/secure-boot.js';
import type { PublicUrls } from './urls.js';
import type { DeliveryTracker } from '../delivery/tracker.js';

export interface AppDeps {
  /** Signs builds for Secure Boot, when the service was given a key. */
  signer?: SecureBootSigner | null;
  registry: BuildRegistry;
  checkins: CheckinRegistry;
  metrics: Metrics;
  policy: AccessPolicy;
  artifacts: ArtifactServer;
  /** What readers did with each build's artifacts (GET /api/v1/builds/{id}: delivery). */
  delivery: DeliveryTracker;
  /** The status page's open event streams, ended first at shutdown. */
  eventStreams: EventStreams;
  urls: PublicUrls;
  logger: Logger;
  maxBodyBytes: number;
  maxFiles: number;
}

export const KEEP_ALIVE_MS = 75_000;

export function buildApp(deps: AppDeps, tls?: { cert: Buffer; key: Buffer }): FastifyInstance {
  const serverFactory = (fastifyHandler: http.RequestListener) => {
    const handler: http.RequestListener = (req, res) => {
      if (ArtifactServer.owns(req.url)) deps.artifacts.handle(req, res);
      else fastifyHandler(req, res);
    };
    const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
    // Slow virtual-media readers must never be cut off mid-download.
    server.timeout = 0;
    // A BMC's virtual-media client reads the ISO by Range requests on kept-alive connections and
    // pauses while the host is busy: keep idle connections as long as nginx does (75 s), so that the
    // server is not closing one just as the client sends on it. headersTimeout must stay above it.
    server.keepAliveTimeout = KEEP_ALIVE_MS;
    server.headersTimeout = KEEP_ALIVE_MS + 5_000;
    return server;
  };

  // Typed as the default instance so route modules need no server generics (plain and TLS share them).
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per response is written by the onResponse hook below instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.maxBodyBytes,
    serverFactory,
    // The socket address is the client's identity; proxies' headers are not believed.
    trustProxy: false,
    return503OnClosing: true,
    // Long enough that an over-long checkin id reaches our validation and gets its message.
    routerOptions: { maxParamLength: 512 },
    frameworkErrors: frameworkError,
  }) as unknown as FastifyInstance;
  // Every body the API accepts is JSON; anything else is a 415 rather than a string to mis-parse.
  app.removeContentTypeParser('text/plain');

  // Callback-style hooks: they run on every request, and an async wrapper costs measurably at this rate.
  app.addHook('onRequest', (request, reply, done) => {
    const refused = deps.policy.refusal(request.socket.remoteAddress, request.method, request.routeOptions.url);
    if (refused) {
      reply.code(403).send(refused);
      return;
    }
    done();
  });

  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    deps.metrics.countRequest(request.method, route, reply.statusCode);
    // Reads and the booted servers' checkin PUTs (every few seconds each) are debug-level noise;
    // orchestrator actions and every failure are worth a line.
    const routine = request.method === 'GET' || request.method === 'HEAD' || (request.method === 'PUT' && reply.statusCode < 400);
    request.log[routine ? 'debug' : 'info']({ method: request.method, route, url: request.url.slice(0, 200), status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
    done();
  });

  installErrorHandling(app);
  systemRoutes(app, deps);
  buildRoutes(app, deps);
  checkinRoutes(app, deps);
  statusRoutes(app, deps);
  return app;
}
