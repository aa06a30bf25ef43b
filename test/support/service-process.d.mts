// Types of service-process.mjs.
import type { ChildProcess } from 'node:child_process';

export declare const REPO: string;
/** dist/cli.js: compiled by the vitest global setup, or `npm run build`. */
export declare const CLI: string;
/** base-artifacts/out, made by `make base-artifacts`. */
export declare const BASE_ARTIFACTS: string;

export interface ExitStatus {
  /** null when the process was ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceOptions {
  /** --data-dir; omitted: a fresh temp dir (removed by stopAllServices() or at exit); null: no flag. */
  dataDir?: string | null;
  /** --base-artifacts; omitted: base-artifacts/out; null: no flag. */
  baseArtifacts?: string | null;
  /** --listen; omitted: 127.0.0.1:0; null: no flag. */
  listen?: string | null;
  /** More CLI flags after the ones above, e.g. ['--build-concurrency', '2']. */
  args?: string[];
  /** Laid over process.env and UOD_LOG_LEVEL=info; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  /** Defaults to CLI. */
  cli?: string;
  /** Flags for node itself, e.g. ['--cpu-prof']. */
  nodeArgs?: string[];
  /** Defaults to REPO. */
  cwd?: string;
  /** Also append everything the service prints to this file. */
  logFile?: string;
  /** 'log' (default): the "listening" log line. 'healthz': GET /healthz answers 200 (needs a fixed port in listen). */
  readiness?: 'log' | 'healthz';
  /** How long to wait for readiness; default 30 s. */
  startTimeoutMs?: number;
  /** Run in its own process group and signal the whole group (the service and the tools it runs). */
  processGroup?: boolean;
}

interface Controls {
  proc: ChildProcess;
  /** The data directory given or made (null when no --data-dir flag was passed). */
  dataDir: string | null;
  /** Resolves when the process has exited. */
  exited: Promise<ExitStatus>;
  /** Everything it printed on stdout and stderr so far (the tail, if it printed more than 16 MiB). */
  logs(): string;
  /** Sends `signal` (default SIGTERM), SIGKILL after `graceMs` (default 30 s); resolves with the exit code (null: ended by a signal). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait: a crash. */
  kill(): Promise<void>;
}

export interface ServiceProcess extends Controls {
  /** http://HOST:PORT of the plain listener. */
  url: string;
  /** https://HOST:PORT of the TLS listener, when there is one. */
  tlsUrl: string | null;
  port: number;
  pid: number;
  /** From spawn to ready. */
  startupMs: number;
}

export interface SpawnedService extends Controls {
  pid: number | undefined;
  /** Resolves once ready; rejects when the process exits first or does not get ready in time. */
  listening: Promise<ServiceProcess>;
}

export declare function spawnService(opts?: ServiceOptions): SpawnedService;
export declare function startService(opts?: ServiceOptions): Promise<ServiceProcess>;
/** SIGKILLs every child started here that still runs, waits for them, and removes the directories made here. */
export declare function stopAllServices(): Promise<void>;
/** A fresh directory under the OS temp dir, removed by stopAllServices() or at exit. */
export declare function serviceTempDir(prefix?: string): string;
/** A TCP port on 127.0.0.1 that was free a moment ago. */
export declare function freePort(): Promise<number>;
