# The event-file callback, run for real: a playbook with tagged tasks on two hosts, one of which fails.
import json
import os
import subprocess
import tempfile

from ansible_collections.uki_on_demand.baremetal.plugins.callback.events import waiting_seconds

HERE = os.path.dirname(__file__)
PLAY = """
- hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: build step (b is slower)
      ansible.builtin.command: "sleep {{ '1.3' if inventory_hostname == 'b' else '0.3' }}"
      changed_when: false
      tags: build
    - name: second build step
      ansible.builtin.command: sleep 0.1
      changed_when: false
      tags: build
    - name: untagged step
      ansible.builtin.debug: {msg: between}
    - name: boot step (fails on b)
      ansible.builtin.command: "{{ 'false' if inventory_hostname == 'b' else 'sleep 0.2' }}"
      changed_when: false
      tags: boot
    - name: release step
      ansible.builtin.wait_for: {timeout: 1}
      tags: release
"""


def run_play(tmp):
    with open(os.path.join(tmp, "play.yml"), "w") as f:
        f.write(PLAY)
    events = os.path.join(tmp, "events.jsonl")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(HERE, "..", "..", "ansible.cfg"), UOD_EVENTS_FILE=events, ANSIBLE_NOCOLOR="1")
    done = subprocess.run(["ansible-playbook", "-i", "a,b,", os.path.join(tmp, "play.yml")], capture_output=True, text=True, env=env,
                          cwd=os.path.join(HERE, "..", ".."))
    with open(events) as f:
        return done, [json.loads(line) for line in f]


def test_one_line_per_server_and_phase_and_one_per_server_at_the_end():
    with tempfile.TemporaryDirectory() as tmp:
        done, events = run_play(tmp)
    assert done.returncode == 2
    phases = {(e["server"], e["phase"]): e for e in events if e["event"] == "phase"}
    assert sorted(phases) == [("a", "boot"), ("a", "build"), ("a", "release"), ("b", "boot"), ("b", "build")]
    assert phases[("b", "boot")]["result"] == "failed"
    assert "non-zero return code" in phases[("b", "boot")]["message"]
    assert phases[("a", "release")]["waiting_seconds"] >= 1
    build = phases[("a", "build")]
    assert build["waiting_seconds"] >= 0.4
    # a waited about a second for b before its second build step could start, and never longer than
    # b's own build phase lasted (a bound that holds on a loaded machine too).
    assert 0.8 <= build["other_servers_seconds"] <= phases[("b", "build")]["seconds"]
    assert phases[("b", "build")]["other_servers_seconds"] < 0.3
    assert abs(build["seconds"] - build["waiting_seconds"] - build["other_servers_seconds"] - build["own_seconds"]) < 0.02
    tasks = [(e["server"], e["task"], e["result"]) for e in events if e["event"] == "task"]
    assert ("a", "second build step", "ok") in tasks and ("b", "boot step (fails on b)", "failed") in tasks
    servers = {e["server"]: e for e in events if e["event"] == "server"}
    assert servers["a"]["result"] == "ok" and servers["b"]["result"] == "failed"
    assert events[0]["event"] == "run"
    # The summary table at the end of the screen output.
    assert "UKI-ON-DEMAND SUMMARY" in done.stdout
    table = done.stdout[done.stdout.index("UKI-ON-DEMAND SUMMARY"):].splitlines()[1:]
    rows = [line.split() for line in table if line.strip()]
    assert [r[:2] for r in rows] == [["a", "ok"], ["b", "failed"]]
    assert rows[1][2:] == ["build", rows[1][3], "boot", rows[1][5], "FAILED"]


def test_waiting_time_from_what_tasks_report():
    assert waiting_seconds({"waited": 3.5}, 0) == 3.5
    assert waiting_seconds({"elapsed": 7}, 0) == 7
    assert waiting_seconds({"delta": "0:01:02.500000"}, 0) == 62.5
    assert waiting_seconds({"elapsed": 1, "attempts": 4}, 2) == 7
    assert waiting_seconds({}, 5) == 0
