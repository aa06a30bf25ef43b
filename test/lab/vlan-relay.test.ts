// The lab's user-space VLAN endpoint (lab/vlan-relay.py) on a real bridge in a fresh namespace: two
// relays for VLAN 100 (one for the lab's side, one standing in for a server's tagged interface, its
// access tap moved to a second namespace) carry HTTP between their addresses; a relay for VLAN 200 on
// the same bridge hears none of it; the namespaces and processes are gone afterwards.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyNamespace, execInNamespace, ip, spawnInNamespace } from '../../lab/netns.js';
import { REPO, tempDir } from '../support/service.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const RELAY = path.join(REPO, 'lab/vlan-relay.py');

describe('lab: the user-space VLAN relay', { timeout: 60_000 }, () => {
  const suffix = randomBytes(3).toString('hex');
  const lab = `uodt-vl-${suffix}`;
  const server = `uodt-vs-${suffix}`;
  const logs = tempDir('vlan-relay');
  const relayLog = (name: string) => path.join(logs, `${name}.log`);

  beforeAll(async () => {
    for (const ns of [lab, server]) {
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    const nsip = (...args: string[]) => ip('-n', lab, ...args);
    await nsip('link', 'add', 'vbr0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await nsip('link', 'set', 'vbr0', 'up');
    for (const [vid, trunk, access] of [[100, 'lt', 'la'], [100, 'st', 'sa'], [200, 'ot', 'oa']] as const) {
      await nsip('tuntap', 'add', 'dev', trunk, 'mode', 'tap');
      await nsip('tuntap', 'add', 'dev', access, 'mode', 'tap');
      await nsip('link', 'set', trunk, 'master', 'vbr0', 'up');
      spawnInNamespace(lab, 'python3', [RELAY, String(vid), trunk, access], relayLog(access));
    }
    await until('relays attached', 10_000, async () => {
      const text = await Promise.all(['la', 'sa', 'oa'].map((a) => run('cat', [relayLog(a)]).then((r) => r.stdout, () => '')));
      return text.every((t) => t.includes('vlan-relay: VLAN')) ? true : undefined;
    }, 100);
    await nsip('addr', 'add', '198.51.100.129/25', 'dev', 'la');
    await nsip('link', 'set', 'la', 'up');
    await nsip('addr', 'add', '198.51.100.131/25', 'dev', 'oa');
    await nsip('link', 'set', 'oa', 'up');
    // The stand-in server's side: its access tap in a namespace of its own (the relay keeps its fd).
    await nsip('link', 'set', 'sa', 'netns', server);
    await ip('-n', server, 'addr', 'add', '198.51.100.140/25', 'dev', 'sa');
    await ip('-n', server, 'link', 'set', 'sa', 'up');
    spawnInNamespace(lab, 'python3', ['-m', 'http.server', '--bind', '198.51.100.129', '8099', '--directory', path.join(REPO, 'lab')], relayLog('http'));
  });

  afterAll(async () => {
    await destroyNamespace(lab);
    await destroyNamespace(server);
  });

  test('tagged frames of its VLAN reach the lab untagged, and the answers go back tagged', async () => {
    const fetched = await until('HTTP over VLAN 100', 20_000, async () => {
      const r = await execInNamespace(server, 'curl', ['-s', '-m', '5', 'http://198.51.100.129:8099/vlan-relay.py'], 10_000);
      return r.code === 0 && r.stdout.length > 0 ? r.stdout : undefined;
    }, 500);
    expect(fetched).toContain('TUNSETIFF');
  });

  test('another VLAN on the same bridge hears nothing: its address is unreachable from VLAN 100', async () => {
    const r = await execInNamespace(server, 'curl', ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://198.51.100.131:8099/'], 10_000);
    expect(r.stdout).toBe('000');
    expect(r.code).not.toBe(0);
  });
});
