# -*- coding: utf-8 -*-
# Which address is this server. Anyone on the provisioning network can claim an address (PUT it to the
# checkin id, or answer on server_host); only the server that holds this run's host key passes SSH's
# StrictHostKeyChecking against the run's known_hosts, and it must also carry this run's instance-id.
from __future__ import annotations

import json
import subprocess
import time
import urllib.request

INSTANCE_ID_FILE = "/var/lib/cloud/data/instance-id"


def pinned_ssh_options(known_hosts, connect_timeout=10):
    """The options every SSH to this run's server uses, the probe here and Ansible's connection
    alike: only the run's pinned ed25519 host key is trusted, and nothing asks a question."""
    return [
        "-o", "UserKnownHostsFile=%s" % known_hosts,
        "-o", "StrictHostKeyChecking=yes",
        "-o", "HostKeyAlgorithms=ssh-ed25519",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=%d" % connect_timeout,
    ]


def ssh_options(known_hosts, private_key, connect_timeout=10):
    return pinned_ssh_options(known_hosts, connect_timeout) + ["-i", private_key]


def probe(address, instance_id, known_hosts, private_key, user="root", run=subprocess.run):
    """None when `address` is this server, else why it is not (one line)."""
    argv = ["ssh"] + ssh_options(known_hosts, private_key) + ["%s@%s" % (user, address), "cat", INSTANCE_ID_FILE]
    try:
        done = run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no answer within 60 s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("@")]
        return lines[-1].strip() if lines else "ssh exited %d" % done.returncode
    got = done.stdout.strip()
    if got != instance_id:
        return "instance-id %s, not this run's %s" % (got or "(empty)", instance_id)
    return None


def checkin_addresses(url, timeout=30):
    """The addresses of a checkin record ([] while there is none)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec: the operator's service URL
        return list(json.load(response).get("addresses") or [])


class NotFound(Exception):
    def __init__(self, message, refused):
        super().__init__(message)
        self.refused = refused


def find_server(candidates, instance_id, known_hosts, private_key, timeout, delay=5, user="root",
                probe_fn=probe, clock=time.monotonic, sleep=time.sleep):
    """The first candidate address that is this server, trying every round until `timeout` seconds.

    `candidates` is a callable returning the addresses to try in this round (re-read each round: the
    checkin record changes). Returns (address, refused) where refused maps each address tried and
    refused to why; raises NotFound naming every address and its reason.
    """
    deadline = clock() + timeout
    refused = {}
    seen_any = False
    while True:
        try:
            addresses = candidates()
        except Exception as err:  # a service that does not answer this round: try again
            addresses = []
            refused["(checkin record)"] = str(err)
        for address in addresses:
            seen_any = True
            why = probe_fn(address, instance_id, known_hosts, private_key, user)
            if why is None:
                refused.pop(address, None)
                return address, refused
            refused[address] = why
        if clock() >= deadline:
            break
        sleep(max(0, min(delay, deadline - clock())))
    if not seen_any:
        raise NotFound("no checkin within %d s: no address to try" % timeout, refused)
    raise NotFound("none of the addresses is this server: " + "; ".join("%s: %s" % kv for kv in refused.items()), refused)
