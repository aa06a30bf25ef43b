# Finding the server: the first candidate that answers with the pinned key and the run's instance-id
# wins; every refusal is named; candidates are read again every round.
import subprocess

import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils import find_server as fs


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def probes(answers):
    """A probe that answers from a table {address: reason or None} and records the calls."""
    calls = []

    def probe(address, instance_id, known_hosts, private_key, user):
        calls.append(address)
        return answers[address]
    return probe, calls


def test_the_first_address_with_the_pinned_key_and_instance_id_wins():
    probe, calls = probes({"192.0.2.250": "Host key verification failed.", "192.0.2.77": None, "192.0.2.78": None})
    clock = Clock()
    address, refused = fs.find_server(lambda: ["192.0.2.250", "192.0.2.77", "192.0.2.78"], "id", "kh", "key", 60,
                                      probe_fn=probe, clock=clock, sleep=clock.sleep)
    assert address == "192.0.2.77"
    assert refused == {"192.0.2.250": "Host key verification failed."}
    assert calls == ["192.0.2.250", "192.0.2.77"]


def test_candidates_are_read_again_each_round():
    rounds = iter([[], ["192.0.2.250"], ["192.0.2.250", "192.0.2.77"]])
    probe, _ = probes({"192.0.2.250": "Host key verification failed.", "192.0.2.77": None})
    clock = Clock()
    address, _ = fs.find_server(lambda: next(rounds), "id", "kh", "key", 60, delay=5, probe_fn=probe, clock=clock, sleep=clock.sleep)
    assert address == "192.0.2.77"
    assert clock.now == 10


def test_the_error_names_every_address_and_why():
    probe, _ = probes({"192.0.2.250": "Host key verification failed.", "192.0.2.9": "instance-id other, not this run's id"})
    clock = Clock()
    with pytest.raises(fs.NotFound) as err:
        fs.find_server(lambda: ["192.0.2.250", "192.0.2.9"], "id", "kh", "key", 12, delay=5, probe_fn=probe, clock=clock, sleep=clock.sleep)
    assert str(err.value) == ("none of the addresses is this server: 192.0.2.250: Host key verification failed.; "
                              "192.0.2.9: instance-id other, not this run's id")
    # Rounds at 0, 5, 10 and a last one at the deadline.
    assert clock.now == 12


def test_no_checkin_at_all():
    clock = Clock()
    with pytest.raises(fs.NotFound, match="^no checkin within 7 s"):
        fs.find_server(lambda: [], "id", "kh", "key", 7, delay=5, probe_fn=None, clock=clock, sleep=clock.sleep)
    assert clock.now == 7


def completed(rc, out="", err=""):
    return lambda argv, **kw: subprocess.CompletedProcess(argv, rc, out, err)


def test_probe_reads_sshs_own_reason():
    err = "@@@@@@@@@@@\n@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n@@@@@@@@@@@\nHost key verification failed.\n"
    assert fs.probe("192.0.2.250", "id", "kh", "key", run=completed(255, err=err)) == "Host key verification failed."
    assert fs.probe("192.0.2.77", "id", "kh", "key", run=completed(0, out="id\n")) is None
    assert fs.probe("192.0.2.77", "id", "kh", "key", run=completed(0, out="other\n")) == "instance-id other, not this run's id"
    assert fs.probe("192.0.2.77", "id", "kh", "key", run=completed(1, out="")) == "ssh exited 1"


def test_probe_pins_the_key_strictly():
    seen = {}

    def run(argv, **kw):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 0, "id\n", "")
    fs.probe("192.0.2.77", "id", "/run/known_hosts", "/k", run=run)
    argv = " ".join(seen["argv"])
    for option in ("UserKnownHostsFile=/run/known_hosts", "StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null", "BatchMode=yes"):
        assert option in argv
    assert seen["argv"][-3:] == ["root@192.0.2.77", "cat", "/var/lib/cloud/data/instance-id"]


def test_ansible_connections_pin_the_key_as_the_probe_does():
    # ansible_ssh_common_args (playbooks/vars/inventory.yml) comes from the same list as the probe's.
    from ansible_collections.uki_on_demand.baremetal.plugins.filter.baremetal import FilterModule
    args = FilterModule().filters()["pinned_ssh_args"]("/run/known_hosts").split()
    assert args == fs.ssh_options("/run/known_hosts", "/k")[:-2]
    assert "HostKeyAlgorithms=ssh-ed25519" in args
