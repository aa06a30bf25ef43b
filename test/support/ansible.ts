// Runs the orchestrator's playbooks for real (ansible-playbook inside the lab's namespace, against the
// lab's inventory) and splits the run into the phases the README reports, from the task names.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './service.js';

export const ORCHESTRATOR = path.join(REPO, 'orchestrator');

export interface PlaybookRun {
  code: number | null;
  output: string;
  /** seconds after the start at which each task began, in order */
  tasks: { name: string; at: number }[];
  seconds: number;
  recap: Record<string, { ok: number; changed: number; failed: number; unreachable: number }>;
}

export function runPlaybook(ns: string, inventory: string, playbook: string, args: string[], opts: { timeoutMs: number; log: string }): Promise<PlaybookRun> {
  const started = Date.now();
  const tasks: { name: string; at: number }[] = [];
  let output = '';
  fs.mkdirSync(path.dirname(opts.log), { recursive: true });
  const log = fs.createWriteStream(opts.log);
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, 'ansible-playbook', '-i', inventory, playbook, ...args], {
      cwd: ORCHESTRATOR,
      env: { ...process.env, ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', PYTHONUNBUFFERED: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    let partial = '';
    const onData = (d: Buffer) => {
      const text = d.toString();
      output += text;
      log.write(text);
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        const m = /^TASK \[(.*)\] \*+$/.exec(line);
        if (m) tasks.push({ name: m[1]!, at: (Date.now() - started) / 1000 });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code) => {
      clearTimeout(timer);
      log.end();
      const recap: PlaybookRun['recap'] = {};
      for (const m of output.matchAll(/^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)) {
        recap[m[1]!] = { ok: Number(m[2]), changed: Number(m[3]), unreachable: Number(m[4]), failed: Number(m[5]) };
      }
      resolve({ code, output, tasks, seconds: (Date.now() - started) / 1000, recap });
    });
  });
}

/**
 * Wall time of each phase, from the first task of a phase to the first task of the next one. `marks`
 * maps a phase name to the (substring of the) task name that starts it, in order.
 */
export function phases(run: PlaybookRun, marks: [string, string][]): Record<string, number> {
  const starts = marks.map(([phase, task]) => [phase, run.tasks.find((t) => t.name.includes(task))?.at] as const);
  const out: Record<string, number> = {};
  starts.forEach(([phase, at], i) => {
    if (at === undefined) return;
    const next = starts.slice(i + 1).find(([, a]) => a !== undefined)?.[1] ?? run.seconds;
    out[phase] = Math.round((next - at) * 10) / 10;
  });
  return out;
}

/** The messages of the play's failures ("msg" of each fatal line). */
export function failures(run: PlaybookRun): string[] {
  return [...run.output.matchAll(/^fatal: \[[^\]]+\]: FAILED! => (.*)$/gm)].map((m) => {
    try {
      return String((JSON.parse(m[1]!) as { msg?: unknown }).msg ?? m[1]);
    } catch {
      return m[1]!;
    }
  });
}
