// The collection's Redfish modules run against a virtual BMC on loopback: its TLS certificate, a
// module run by `ansible localhost -m`, and the checks the contract tests share.
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { sleep } from '../lab/bmc-fakes.js';
import { ORCHESTRATOR } from './ansible.js';
import { tempDir } from './service.js';

export const USER = 'admin';
export const PASS = 'contract-s3cret';

let tls: { key: string; cert: string } | undefined;
export async function certificate(): Promise<{ key: string; cert: string }> {
  if (tls) return tls;
  const dir = tempDir('bmc-cert');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=bmc',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')]);
  const fs = await import('node:fs');
  tls = { key: fs.readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8') };
  return tls;
}

/** Runs one of the collection's modules on the controller; its result. */
export async function module(name: string, host: string, args: Record<string, unknown>, password = PASS): Promise<Record<string, any>> {
  const moduleArgs = JSON.stringify({ bmc_host: host, bmc_username: USER, bmc_password: password, change_delay: 1, ...args });
  const env = { ...process.env, ANSIBLE_LOAD_CALLBACK_PLUGINS: '1', ANSIBLE_STDOUT_CALLBACK: 'json', ANSIBLE_CALLBACKS_ENABLED: '', ANSIBLE_NOCOLOR: '1' };
  const out = await new Promise<string>((resolve) => {
    const child = spawn('ansible', ['localhost', '-m', `uki_on_demand.baremetal.${name}`, '-a', moduleArgs], { cwd: ORCHESTRATOR, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', () => resolve(text));
  });
  return JSON.parse(out.slice(out.indexOf('{'))).plays[0].tasks[0].hosts.localhost;
}

/** What the BMC answered to one action: one or more refusals with `status`, then the one it took. */
export function expectRefusedThenTaken(answers: { url: string; status: number }[], action: string, status: number): void {
  const got = answers.filter((a) => a.url.endsWith(action)).map((a) => a.status);
  expect(got.length, `${action}: ${got}`).toBeGreaterThan(1);
  expect(got).toEqual([...got.slice(0, -1).map(() => status), 204]);
}

export async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}
