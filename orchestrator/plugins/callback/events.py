# -*- coding: utf-8 -*-
# Writes what a workflow did to a JSON-lines event file (one line per server and phase, one per server
# at the end) and prints a table per server when the run ends. Tests and dashboards read the file,
# never the screen.
from __future__ import annotations

DOCUMENTATION = r"""
name: events
type: notification
short_description: JSON-lines event file and per-server summary of a uki-on-demand workflow
description:
  - A task's phase is its tag among build, boot, find, inventory, write, reboot, verify, release.
  - One line per server and phase when the phase ends, with start, end, seconds, the seconds spent
    waiting on others (BMC, guest, service, disk write), waiting for the other servers of the run
    (a task starts once every server has finished the one before), and the orchestrator's own share,
    the result, and for a failure the message; one line per server and task; one line per server at
    the end with its result.
  - Waiting time is what the tasks report (waited of this collection's modules, elapsed of uri and
    wait_for, delta of command, retries times their delay), and the whole of a raw task (an SSH
    session and a command on the server).
requirements: [enabled in ansible.cfg (callbacks_enabled)]
options:
  events_file:
    description: where the event file goes (default runs/<UTC time>-<playbook>.jsonl under the current directory)
    env: [{name: UOD_EVENTS_FILE}]
    ini: [{section: uod_events, key: file}]
    type: path
"""

import datetime
import json
import os
import re
import time

from ansible.plugins.callback import CallbackBase

PHASES = ("build", "boot", "find", "inventory", "write", "reboot", "verify", "release")
# Module results that say who a run's server is: carried into every later event of that server.
IDENTITY_FIELDS = ("run_id", "host_key_fingerprint")
RAW_ACTIONS = ("raw", "ansible.builtin.raw", "ansible.legacy.raw")


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(delta):
    m = re.match(r"^(\d+):(\d+):(\d+(?:\.\d+)?)$", str(delta or ""))
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0


def waiting_seconds(result, delay):
    """Seconds of a task spent waiting on something outside Ansible, from what the task reports."""
    waited = 0.0
    for key in ("waited", "elapsed"):
        if isinstance(result.get(key), (int, float)):
            waited = max(waited, float(result[key]))
    waited = max(waited, _seconds(result.get("delta")))
    attempts = result.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        waited += (attempts - 1) * delay
    return waited


def phase_of(task):
    for tag in task.tags or []:
        if tag in PHASES:
            return tag
    return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "uki_on_demand.baremetal.events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._file = None
        self._task_start = {}
        self._open = {}      # host -> open phase record
        self._done = {}      # host -> [closed phase records]
        self._identity = {}  # host -> {run_id, host_key_fingerprint}
        self._failure = {}   # host -> last failure message
        self._last_result = {}  # host -> when its last task ended

    # --- the file ---------------------------------------------------------------------------

    def _write(self, record):
        if self._file is None:
            return
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def v2_playbook_on_start(self, playbook):
        self.set_options()
        path = self.get_option("events_file")
        if not path:
            name = os.path.splitext(os.path.basename(playbook._file_name))[0]
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            path = os.path.join(os.getcwd(), "runs", "%s-%s.jsonl" % (stamp, name))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a")
        self._write({"event": "run", "playbook": playbook._file_name, "start": _iso(time.time())})

    # --- phases -----------------------------------------------------------------------------

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start[task._uuid] = time.time()

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start[task._uuid] = time.time()

    def _close(self, host, end, result="ok", message=None):
        record = self._open.pop(host, None)
        if record is None:
            return
        record.update(self._identity.get(host, {}))
        record["end"] = _iso(end)
        record["seconds"] = round(end - record.pop("_t0"), 2)
        record["waiting_seconds"] = round(min(record["waiting_seconds"], record["seconds"]), 2)
        record["other_servers_seconds"] = round(min(record["other_servers_seconds"], record["seconds"] - record["waiting_seconds"]), 2)
        record["own_seconds"] = round(record["seconds"] - record["waiting_seconds"] - record["other_servers_seconds"], 2)
        record["result"] = result
        if message is not None:
            record["message"] = message
        self._done.setdefault(host, []).append(record)
        self._write(record)

    def _account(self, result, outcome):
        task = result._task
        host = result._host.get_name()
        now = time.time()
        res = result._result or {}
        for field in IDENTITY_FIELDS:
            if isinstance(res.get(field), str):
                self._identity.setdefault(host, {})[field] = res[field]
        phase = phase_of(task)
        started = self._task_start.get(task._uuid, now)
        # Time between this server's last task and this one's start went to the other servers.
        idle = max(0.0, started - self._last_result.get(host, started))
        self._last_result[host] = now
        if outcome == "failed":
            self._failure[host] = res.get("msg")
        if phase is None:
            return
        record = self._open.get(host)
        if record is None or record["phase"] != phase:
            self._close(host, started)
            record = self._open[host] = {"event": "phase", "server": host, "phase": phase, "start": _iso(started),
                                         "_t0": started, "waiting_seconds": 0.0, "other_servers_seconds": 0.0}
        else:
            record["other_servers_seconds"] += idle
        try:
            delay = float(task.delay or 0)
        except (TypeError, ValueError):
            delay = 0.0
        # raw is an SSH session and a command on the server, nothing of Ansible's own in between.
        waited = now - started if task.action in RAW_ACTIONS else min(waiting_seconds(res, delay), now - started)
        record["waiting_seconds"] += waited
        self._write({"event": "task", "server": host, "phase": phase, "task": task.get_name(), "seconds": round(now - started, 2),
                     "waiting_seconds": round(waited, 2), "result": outcome})
        if outcome == "failed":
            self._close(host, now, "failed", str(res.get("msg", "failed")))

    def v2_runner_on_ok(self, result):
        self._account(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._account(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result):
        self._account(result, "failed")

    # --- the end ----------------------------------------------------------------------------

    def v2_playbook_on_stats(self, stats):
        now = time.time()
        for host in list(self._open):
            self._close(host, now)
        hosts = sorted(set(stats.processed) | set(self._done))
        lines = []
        for host in hosts:
            summary = stats.summarize(host)
            failed = bool(summary.get("failures") or summary.get("unreachable"))
            record = {"event": "server", "server": host, "result": "failed" if failed else "ok", "end": _iso(now)}
            record.update(self._identity.get(host, {}))
            if failed and self._failure.get(host):
                record["message"] = str(self._failure[host])
            self._write(record)
            phases = self._done.get(host, [])
            cells = "  ".join("%s %.1fs%s" % (p["phase"], p["seconds"], "" if p["result"] == "ok" else " FAILED") for p in phases)
            lines.append("%-20s %-6s %s" % (host, record["result"], cells or "(no phase ran)"))
        if lines:
            self._display.banner("UKI-ON-DEMAND SUMMARY (server, result, phase times)")
            for line in lines:
                self._display.display(line)
        if self._file is not None:
            self._file.close()
            self._file = None
