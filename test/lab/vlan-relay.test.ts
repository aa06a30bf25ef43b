// The lab's user-space VLAN endpoint (lab/vlan-relay.py) on a real bridge in a fresh namespace: two
// relays for VLAN 100 (one for the lab's side, one standing in for a server's tagged interface, its
// access tap moved to a second namespace) carry HTTP between their addresses; a relay for VLAN 200 on
// the same bridge, its access tap in a third namespace with a listener behind it, hears none of it:
// tcpdump on the bridge sees the server's frames tagged `vlan 100` (broadcasts flooded to VLAN 200's
// port too) and nothing tagged 200, tcpdump on VLAN 200's access tap sees nothing arrive, and the
// listener gets no request. The namespaces and processes are gone afterwards.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { destroyNamespace, execInNamespace, ip, spawnInNamespace } from '../../lab/netns.js';
import { requireRoot, requireTool } from '../support/prerequisites.js';
import { REPO, tempDir } from '../support/service.js';
import { until } from '../support/until.js';

const run = promisify(execFile);
const RELAY = path.join(REPO, 'lab/vlan-relay.py');
requireRoot('network namespaces, a bridge and taps');
requireTool('tcpdump', 'tcpdump');

/** Is the process gone (exited and reaped)? */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/**
 * tcpdump on `dev` inside `ns`, writing every frame to a file as it arrives; resolves once it
 * captures. `stop()` ends it and returns what it saw, one line per frame with link-level headers
 * (`-e`: MACs and the 802.1Q tag, e.g. `ethertype 802.1Q (0x8100), length 46: vlan 100, p 0, ...`).
 */
async function capture(ns: string, dev: string, dir: string, extra: string[] = []): Promise<{ stop: () => Promise<string[]> }> {
  const pcap = path.join(dir, `${ns}-${dev}.pcap`);
  const log = path.join(dir, `${ns}-${dev}.tcpdump.log`);
  // -Z root: Debian's tcpdump otherwise drops to its own user, which cannot write into a root-owned
  // temporary directory. --immediate-mode and -U: each frame is handed over and written out as it
  // arrives (buffered frames would be lost when it is stopped).
  const pid = spawnInNamespace(ns, 'tcpdump', ['-i', dev, '-n', '--immediate-mode', '-U', '-Z', 'root', '-w', pcap, ...extra], log);
  await until(`tcpdump on ${dev} listening`, 10_000, async () => (fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('listening on') ? true : undefined), 100);
  return {
    stop: async () => {
      process.kill(pid, 'SIGINT');
      await until(`tcpdump on ${dev} stopped`, 10_000, async () => (gone(pid) ? true : undefined), 100);
      const { stdout } = await run('tcpdump', ['-r', pcap, '-e', '-n', '-tt'], { maxBuffer: 16 << 20 });
      return stdout.split('\n').filter(Boolean);
    },
  };
}

describe('lab: the user-space VLAN relay', { timeout: 60_000 }, () => {
  const suffix = randomBytes(3).toString('hex');
  const lab = `uodt-vl-${suffix}`;
  const server = `uodt-vs-${suffix}`;
  const other = `uodt-vo-${suffix}`;
  const logs = tempDir('vlan-relay');
  const relayLog = (name: string) => path.join(logs, `${name}.log`);

  beforeAll(async () => {
    for (const ns of [lab, server, other]) {
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
    // The stand-in server's side: its access tap in a namespace of its own (the relay keeps its fd).
    await nsip('link', 'set', 'sa', 'netns', server);
    await ip('-n', server, 'addr', 'add', '198.51.100.140/25', 'dev', 'sa');
    await ip('-n', server, 'link', 'set', 'sa', 'up');
    // VLAN 200's side: its access tap in a third namespace (no other address of the same subnet there,
    // so nothing but VLAN 200 can answer for it), with IPv6 off so that it sends nothing unprompted: on
    // the wire it speaks only if something of VLAN 100 reaches it. A listener records any request.
    await nsip('link', 'set', 'oa', 'netns', other);
    await execInNamespace(other, 'sysctl', ['-qw', 'net.ipv6.conf.oa.disable_ipv6=1']);
    await ip('-n', other, 'addr', 'add', '198.51.100.131/25', 'dev', 'oa');
    await ip('-n', other, 'link', 'set', 'oa', 'up');
    spawnInNamespace(other, 'python3', ['-u', '-m', 'http.server', '--bind', '198.51.100.131', '8099', '--directory', path.join(REPO, 'lab')], relayLog('listener'));
    spawnInNamespace(lab, 'python3', ['-m', 'http.server', '--bind', '198.51.100.129', '8099', '--directory', path.join(REPO, 'lab')], relayLog('http'));
    await until('VLAN 200 listener up', 10_000, async () => (fs.readFileSync(relayLog('listener'), 'utf8').includes('Serving HTTP') ? true : undefined), 100);
  });

  afterAll(async () => {
    await destroyNamespace(lab);
    await destroyNamespace(server);
    await destroyNamespace(other);
  });

  test('tagged frames of its VLAN reach the lab untagged, and the answers go back tagged', async () => {
    const fetched = await until('HTTP over VLAN 100', 20_000, async () => {
      const r = await execInNamespace(server, 'curl', ['-s', '-m', '5', 'http://198.51.100.129:8099/vlan-relay.py'], 10_000);
      return r.code === 0 && r.stdout.length > 0 ? r.stdout : undefined;
    }, 500);
    expect(fetched).toContain('TUNSETIFF');
  });

  test('another VLAN on the same bridge hears nothing: what VLAN 100 sends is tagged 100 and never reaches VLAN 200', async () => {
    const sa = JSON.parse(await ip('-n', server, '-j', 'link', 'show', 'sa'))[0].address as string;
    const bridge = await capture(lab, 'vbr0', logs); // promiscuous: every frame any port hands the bridge
    const arrived = await capture(other, 'oa', logs, ['-Q', 'in']); // what VLAN 200's relay delivers
    // From the server (VLAN 100): HTTP to VLAN 200's address (its ARP requests are broadcasts, which the
    // bridge floods to VLAN 200's trunk port too), and HTTP to the lab's address on VLAN 100.
    const toOther = await execInNamespace(server, 'curl', ['-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', 'http://198.51.100.131:8099/'], 10_000);
    const toLab = await execInNamespace(server, 'curl', ['-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://198.51.100.129:8099/vlan-relay.py'], 10_000);
    await new Promise((r) => setTimeout(r, 1_000)); // time for any late answer to show on the wire
    const onBridge = await bridge.stop();
    const atOther = await arrived.stop();

    expect(toLab.stdout).toBe('200');
    const fromServer = onBridge.filter((l) => l.includes(`${sa} >`));
    // The server's traffic crossed the bridge, every frame of it tagged with VLAN 100, including the
    // broadcasts asking for VLAN 200's address.
    expect(fromServer.some((l) => /vlan 100, .*Request who-has 198\.51\.100\.131 tell 198\.51\.100\.140/.test(l)), onBridge.join('\n')).toBe(true);
    expect(fromServer.some((l) => /vlan 100, .*198\.51\.100\.140\.\d+ > 198\.51\.100\.129\.8099: Flags \[S\]/.test(l)), onBridge.join('\n')).toBe(true);
    expect(fromServer.filter((l) => !l.includes('vlan 100,'))).toEqual([]);
    expect(onBridge.some((l) => /vlan 100, .*198\.51\.100\.129\.8099 > 198\.51\.100\.140\.\d+: Flags \[S\.\]/.test(l)), onBridge.join('\n')).toBe(true);
    // VLAN 200 never answered (it would have, tagged 200, had any of it reached its side) ...
    expect(onBridge.filter((l) => l.includes('vlan 200'))).toEqual([]);
    // ... because nothing at all came out of its relay, and its listener got no request.
    expect(atOther).toEqual([]);
    expect(fs.readFileSync(relayLog('listener'), 'utf8')).not.toMatch(/"GET /);
    expect(toOther.stdout).toBe('000');
    expect(toOther.code).not.toBe(0);
  });
});
