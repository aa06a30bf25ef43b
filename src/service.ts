// Composition root: wires the catalog, registries, pipeline and listeners from a Config, and owns
// start-up (reload state, clean scratch space) and graceful shutdown.
import fs from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { AccessPolicy } from './api/acl.js';
import { buildApp } from './api/app.js';
import { ArtifactServer } from './api/artifacts.js';
import { EventStreams } from './api/routes/status.js';
import { PublicUrls } from './api/urls.js';
import { ImagePipeline, type BuildPipeline } from './builds/pipeline.js';
import { SecureBootSigner } from './image/secure-boot.js';
import { FileBuildStore } from './builds/build-store.js';
import { BuildQueue } from './builds/queue.js';
import { BuildRegistry } from './builds/registry.js';
import { BaseArtifactCatalog } from './catalog/base-artifacts.js';
import { CheckinRegistry } from './checkins/registry.js';
import { DeliveryTracker } from './delivery/tracker.js';
import { describeConfig, formatHostPort, type Config } from './config.js';
import { missingTools } from './image/tools.js';
import { Metrics } from './metrics.js';

/**
 * How long shutdown waits for in-flight responses (a BMC mid-download) before cutting them. Virtual
 * media retries its Range reads against the restarted service.
 */
export const SHUTDOWN_DRAIN_MS = 10_000;

async function closeWithin(app: FastifyInstance, ms: number): Promise<void> {
  // Closing a server closes the connections idle at that moment only: a kept-alive connection whose
  // response finishes later would hold shutdown until its keep-alive timeout.
  const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
  const cut = setTimeout(() => app.server.closeAllConnections(), ms);
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
    clearTimeout(cut);
  }
}

/**
 * Some clients half-close their side right after sending a request (nc without -q, some firmware).
 * Node's HTTP server drops the answer to such a request unless httpAllowHalfOpen is set (an
 * undocumented http.Server property, Node 20), and a TLS server ends the socket at the client's FIN
 * unless allowHalfOpen is set too.
 */
function answerHalfClosedRequests(server: Server): void {
  Object.assign(server, { httpAllowHalfOpen: true, allowHalfOpen: true });
}

export interface RunningService {
  /** Bound addresses, e.g. { http: "127.0.0.1:8080", https: null }. */
  addresses: { http: string; https: string | null };
  registry: BuildRegistry;
  checkins: CheckinRegistry;
  close(): Promise<void>;
}

export async function startService(
  config: Config,
  options: { logger?: Logger; pipeline?: BuildPipeline } = {},
): Promise<RunningService> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'uki-on-demand' } });
  logger.info({ config: describeConfig(config) }, 'starting');

  for (const arch of ['amd64', 'arm64'] as const) {
    const missing = await missingTools(arch);
    if (missing.length) logger.warn({ arch, missing }, `${arch} builds will fail until these are installed`);
  }
  const catalog = new BaseArtifactCatalog(config.baseArtifacts);
  if ((await catalog.list()).length === 0) {
    logger.warn({ dir: config.baseArtifacts }, 'no base artifacts found; every build request will be refused (run `make base-artifacts`)');
  }

  // A key that cannot sign stops start-up here, before anything listens (one line, no key bytes).
  const signer = config.secureBootKey && config.secureBootCert ? await SecureBootSigner.load(config.secureBootKey, config.secureBootCert) : null;
  if (signer) logger.info({ secureBoot: signer }, 'every UKI is signed for Secure Boot');

  await fs.mkdir(config.dataDir, { recursive: true });
  const metrics = new Metrics();
  const queue = new BuildQueue(config.buildConcurrency, config.queueSize);
  const registry = new BuildRegistry({
    store: new FileBuildStore(config.dataDir, logger),
    catalog,
    queue,
    pipeline: options.pipeline ?? new ImagePipeline({ logger, ukiWriter: config.ukiWriter, ...(signer ? { signer } : {}) }),
    logger,
    observer: { finished: (state, seconds) => metrics.observeBuild(state, seconds) },
  });
  const checkins = new CheckinRegistry({ dataDir: config.dataDir, logger });
  const delivery = new DeliveryTracker();
  const eventStreams = new EventStreams();
  await checkins.load();
  await registry.load();
  metrics.setSources({
    buildsByState: () => registry.countByState(),
    queueDepth: () => queue.depth,
    buildsRunning: () => queue.active,
    checkins: () => checkins.size,
    deliveries: () => delivery.samples(),
  });

  const policy = new AccessPolicy(config.trustedCidrs);
  const artifacts = new ArtifactServer({ registry, metrics, policy, logger, delivery });
  const deps = {
    registry, checkins, metrics, policy, artifacts, logger, signer, delivery, eventStreams,
    urls: new PublicUrls({ publicUrl: config.publicUrl, publicTlsUrl: config.publicTlsUrl, tls: config.tlsListen !== null }),
    maxBodyBytes: config.maxBodyBytes,
    maxFiles: config.maxFiles,
  };

  const apps: FastifyInstance[] = [];
  const listen = async (app: FastifyInstance, host: string, port: number): Promise<string> => {
    apps.push(app);
    answerHalfClosedRequests(app.server);
    await app.listen({ host, port });
    const addr = app.server.address() as AddressInfo;
    return formatHostPort({ host: addr.address, port: addr.port });
  };

  try {
    const tls = config.tlsListen && config.tlsCert && config.tlsKey
      ? { listen: config.tlsListen, cert: await fs.readFile(config.tlsCert), key: await fs.readFile(config.tlsKey) }
      : null;
    const httpAddress = await listen(buildApp(deps), config.listen.host, config.listen.port);
    const httpsAddress = tls ? await listen(buildApp(deps, tls), tls.listen.host, tls.listen.port) : null;
    const { publicUrl, publicTlsUrl } = deps.urls.resolve({ http: httpAddress, https: httpsAddress });
    logger.info({ http: httpAddress, https: httpsAddress, publicUrl, publicTlsUrl, dataDir: config.dataDir }, 'listening');

    let closing: Promise<void> | null = null;
    return {
      addresses: { http: httpAddress, https: httpsAddress },
      registry,
      checkins,
      close: () =>
        (closing ??= (async () => {
          eventStreams.endAll();
          await Promise.all(apps.map((a) => closeWithin(a, SHUTDOWN_DRAIN_MS)));
          await registry.shutdown();
          await artifacts.closeAll();
          await checkins.close();
          logger.info('stopped');
        })()),
    };
  } catch (err) {
    await Promise.all(apps.map((a) => a.close().catch(() => {})));
    await registry.shutdown();
    await checkins.close();
    throw err;
  }
}
