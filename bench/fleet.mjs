// make bench-fleet: the orchestrator at fleet size on simulated servers (lab/README.md "Simulated
// servers"). For each N (BENCH_FLEET_SIZES, default 1,10,25,50) a lab of N simulated servers is made,
// inspected by one inspect.yml run, then provisioned by one provision.yml run, and taken down.
// Measured for each run: wall time, per-server p50/p95 (from the run's event file), failures, and CPU
// seconds per server of the service, of Ansible (ansible-playbook and every process it started) and of
// the simulated servers (their BMCs, firmware work and containers); the service's peak RSS.
// Writes bench/results-fleet.json and prints a table. Not part of CI (about 30 minutes on two cores).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { defaultLabOptions, labDown, labUp } = await import(path.join(REPO, 'dist/lab/lab.js'));
const SIZES = (process.env.BENCH_FLEET_SIZES ?? '1,10,25,50').split(',').map(Number);
const LINK_MBPS = Number(process.env.BENCH_FLEET_LINK_MBPS ?? 1000);
const WORK = path.join(REPO, 'bench/work/fleet');
const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
const started = Date.now();
const log = (msg) => process.stderr.write(`[fleet ${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${msg}\n`);

/** utime, stime, cutime, cstime of a process in seconds: itself and its reaped descendants. */
function cpuOf(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS;
  } catch {
    return 0;
  }
}

/** Live children of every process, from /proc (one scan). */
function childrenMap() {
  const map = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!map.has(ppid)) map.set(ppid, []);
      map.get(ppid).push(Number(e));
    } catch {
      /* gone */
    }
  }
  return map;
}

/** CPU seconds of a process tree: each live process with what it reaped (no process counted twice). */
function treeCpu(pid, children = childrenMap()) {
  return cpuOf(pid) + (children.get(pid) ?? []).reduce((sum, c) => sum + treeCpu(c, children), 0);
}

function pidsByCmdline(pattern) {
  return fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => {
    try {
      return pattern.test(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '));
    } catch {
      return false;
    }
  });
}

function peakRssMb(pid) {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : null;
}

function percentile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : null;
}

/** Runs a playbook inside the lab; CPU of ansible-playbook and all it started, from the wrapper shell's cutime/cstime. */
function playbook(ns, inventory, name, events, logFile) {
  return new Promise((resolve) => {
    const stat = `${logFile}.cpu`;
    const script = `ansible-playbook -i '${inventory}' ${name} > '${logFile}' 2>&1; rc=$?; cat /proc/$$/stat > '${stat}'; exit $rc`;
    const t0 = Date.now();
    const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script], {
      cwd: path.join(REPO, 'orchestrator'), stdio: 'ignore',
      env: { ...process.env, ANSIBLE_NOCOLOR: '1', UOD_EVENTS_FILE: events },
    });
    child.once('exit', (code) => {
      if (!fs.existsSync(stat)) return resolve({ code, seconds: (Date.now() - t0) / 1000, cpu: NaN }); // killed
      const f = fs.readFileSync(stat, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      resolve({ code, seconds: (Date.now() - t0) / 1000, cpu: (Number(fields[13]) + Number(fields[14])) / TICKS });
    });
  });
}

function serverTimes(events) {
  const lines = fs.readFileSync(events, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const servers = lines.filter((e) => e.event === 'server');
  const wall = new Map();
  for (const e of lines.filter((x) => x.event === 'phase')) wall.set(e.server, (wall.get(e.server) ?? 0) + e.seconds);
  return { ok: servers.filter((s) => s.result === 'ok').length, failed: servers.filter((s) => s.result === 'failed').map((s) => `${s.server}: ${s.message}`), perServer: [...wall.values()] };
}

async function measure(n) {
  const namespace = `uodfleet${n}`;
  const stateDir = path.join(WORK, `lab-${n}`);
  fs.rmSync(stateDir, { recursive: true, force: true });
  const opts = defaultLabOptions(REPO, { namespace, stateDir, servers: n, simulated: n, simulatedLinkMbps: LINK_MBPS, diskGiB: 4, serviceLogLevel: 'info' });
  await labDown(namespace, stateDir);
  current = { namespace, stateDir };
  const { description: d } = await labUp(opts);
  const out = { n, linkMbps: LINK_MBPS };
  try {
    // Fixed addresses outside the DHCP range: IPAM from BMC identities can collide in a /24 at N = 50.
    const inv = YAML.parse(fs.readFileSync(d.inventory, 'utf8'));
    Object.values(inv.all.children.servers.hosts).forEach((h, i) => (h.server_host = `192.0.2.${10 + i}`));
    const inventory = path.join(stateDir, 'inventory-fleet.yml');
    fs.writeFileSync(inventory, YAML.stringify(inv));
    const [service] = pidsByCmdline(/dist\/cli\.js serve/);
    const bmcs = () => pidsByCmdline(/dist\/lab\/bmc\/main\.js/);
    for (const workflow of ['inspect', 'provision']) {
      const events = path.join(stateDir, `${workflow}.events.jsonl`);
      const before = { service: cpuOf(service), sim: bmcs().reduce((s, p) => s + treeCpu(p), 0) };
      log(`N=${n} ${workflow}...`);
      const run = await playbook(namespace, inventory, `${workflow}.yml`, events, path.join(stateDir, `${workflow}.log`));
      const after = { service: cpuOf(service), sim: bmcs().reduce((s, p) => s + treeCpu(p), 0) };
      const t = serverTimes(events);
      out[workflow] = {
        wallSeconds: +run.seconds.toFixed(1),
        perServerP50: +percentile(t.perServer, 50).toFixed(1),
        perServerP95: +percentile(t.perServer, 95).toFixed(1),
        ok: t.ok,
        failures: n - t.ok,
        failed: t.failed,
        cpuPerServer: {
          service: +((after.service - before.service) / n).toFixed(2),
          ansible: +(run.cpu / n).toFixed(2),
          simulated: +((after.sim - before.sim) / n).toFixed(2),
        },
      };
      log(`N=${n} ${workflow}: ${JSON.stringify(out[workflow])}`);
    }
    out.servicePeakRssMb = +peakRssMb(service).toFixed(0);
  } finally {
    await labDown(namespace, stateDir);
    current = null;
  }
  return out;
}

// An interrupted run leaves nothing behind: the lab being measured is taken down.
let current = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    log(`${signal}: taking the lab down`);
    if (current) await labDown(current.namespace, current.stateDir);
    process.exit(1);
  });
}

if (process.getuid() !== 0) throw new Error('bench-fleet needs root (the lab: namespaces, loop devices, containers)');
fs.mkdirSync(WORK, { recursive: true });
const results = [];
for (const n of SIZES) results.push(await measure(n));
const machine = { cpus: os.cpus().length, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), kernel: os.release(), commit: execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).trim() };
const base = results.find((r) => r.n === Math.min(...SIZES));
const top = results.find((r) => r.n === Math.max(...SIZES));
const goals = {
  zeroFailuresAtMax: top.inspect.failures === 0 && top.provision.failures === 0,
  serviceCpuPerServerRatio: {
    inspect: +(top.inspect.cpuPerServer.service / base.inspect.cpuPerServer.service).toFixed(2),
    provision: +(top.provision.cpuPerServer.service / base.provision.cpuPerServer.service).toFixed(2),
    goal: 1.15,
  },
  servicePeakRssMb: { value: Math.max(...results.map((r) => r.servicePeakRssMb)), goal: 300 },
};
fs.writeFileSync(path.join(REPO, 'bench/results-fleet.json'), JSON.stringify({ machine, results, goals }, null, 2) + '\n');
console.log('N   workflow   wall s  p50 s  p95 s  fail  CPU s/server: service ansible simulated');
for (const r of results) {
  for (const w of ['inspect', 'provision']) {
    const x = r[w];
    console.log(`${String(r.n).padEnd(3)} ${w.padEnd(10)} ${String(x.wallSeconds).padStart(6)} ${String(x.perServerP50).padStart(6)} ${String(x.perServerP95).padStart(6)} ${String(x.failures).padStart(5)}  ${String(x.cpuPerServer.service).padStart(21)} ${String(x.cpuPerServer.ansible).padStart(7)} ${String(x.cpuPerServer.simulated).padStart(9)}`);
  }
}
console.log(`service peak RSS: ${results.map((r) => `N=${r.n} ${r.servicePeakRssMb} MB`).join(', ')}`);
console.log(JSON.stringify(goals));
