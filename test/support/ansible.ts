// Runs the orchestrator's playbooks for real (ansible-playbook inside the lab's namespace, against the
// lab's inventory) and reads what they did from the run's event file (the collection's callback
// uki_on_demand.baremetal.events), never from the screen.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { requireTool } from './prerequisites.js';
import { REPO } from './service.js';

export const ORCHESTRATOR = path.join(REPO, 'orchestrator');

/** The tools every orchestrator test file needs; a missing one fails the file naming its package. */
export function requireAnsible(): void {
  requireTool('ansible-playbook', 'ansible');
  requireTool('ansible-galaxy', 'ansible');
  requireTool('ansible-lint', 'ansible-lint');
  if (!fs.existsSync('/usr/lib/python3/dist-packages/pytest')) throw new Error('pytest is missing for /usr/bin/python3: apt install python3-pytest (or `make deps`)');
  if (!fs.existsSync('/usr/lib/python3/dist-packages/sushy')) throw new Error('sushy is missing for /usr/bin/python3: apt install python3-sushy (or `make deps`)');
}

/** One line of the event file. */
export interface RunEvent {
  event: 'run' | 'phase' | 'server';
  server?: string;
  phase?: string;
  start?: string;
  end?: string;
  seconds?: number;
  waiting_seconds?: number;
  other_servers_seconds?: number;
  own_seconds?: number;
  result?: 'ok' | 'failed';
  message?: string;
  run_id?: string;
  host_key_fingerprint?: string;
}

export interface PlaybookRun {
  code: number | null;
  output: string;
  seconds: number;
  events: RunEvent[];
}

/**
 * Runs a playbook to its end. A run that outlives `timeoutMs` is killed and throws: a timeout is a
 * test failure, never an expected failure.
 */
export function runPlaybook(ns: string, inventory: string, playbook: string, args: string[], opts: { timeoutMs: number; log: string }): Promise<PlaybookRun> {
  const started = Date.now();
  let output = '';
  fs.mkdirSync(path.dirname(opts.log), { recursive: true });
  const eventsFile = opts.log.replace(/\.log$/, '') + '.events.jsonl';
  fs.rmSync(eventsFile, { force: true });
  const log = fs.createWriteStream(opts.log);
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, 'ansible-playbook', '-i', inventory, playbook, ...args], {
      cwd: ORCHESTRATOR,
      env: { ...process.env, ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', PYTHONUNBUFFERED: '1', UOD_EVENTS_FILE: eventsFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      log.write(d);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => {
      clearTimeout(timer);
      log.end();
      if (killed) return reject(new Error(`${playbook} ${args.join(' ')} did not end within ${opts.timeoutMs / 1000} s (killed; output in ${opts.log})`));
      const events = fs.existsSync(eventsFile)
        ? fs.readFileSync(eventsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as RunEvent)
        : [];
      resolve({ code, output, seconds: (Date.now() - started) / 1000, events });
    });
  });
}

/** The phases of one server in the order they ran. */
export function phasesOf(run: PlaybookRun, server: string): RunEvent[] {
  return run.events.filter((e) => e.event === 'phase' && e.server === server);
}

/** The end-of-run record of one server (result, message, run_id). */
export function serverResult(run: PlaybookRun, server: string): RunEvent {
  const r = run.events.find((e) => e.event === 'server' && e.server === server);
  if (!r) throw new Error(`no end-of-run event for ${server} in the event file`);
  return r;
}

/** The closing line of each failed server, by server. */
export function failures(run: PlaybookRun): Record<string, string> {
  return Object.fromEntries(run.events.filter((e) => e.event === 'server' && e.result === 'failed').map((e) => [e.server!, e.message ?? '']));
}

/** Wall, waiting, other-servers and own seconds per phase of one server (the README's Timings). */
export function timings(run: PlaybookRun, server: string): Record<string, { seconds: number; waiting: number; otherServers: number; own: number }> {
  const out: Record<string, { seconds: number; waiting: number; otherServers: number; own: number }> = {};
  for (const p of phasesOf(run, server)) {
    const t = (out[p.phase!] ??= { seconds: 0, waiting: 0, otherServers: 0, own: 0 });
    t.seconds = round(t.seconds + p.seconds!);
    t.waiting = round(t.waiting + p.waiting_seconds!);
    t.otherServers = round(t.otherServers + p.other_servers_seconds!);
    t.own = round(t.own + p.own_seconds!);
  }
  return out;
}

const round = (n: number) => Math.round(n * 10) / 10;
