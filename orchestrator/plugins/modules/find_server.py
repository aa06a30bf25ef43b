#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: find_server
short_description: Find which address is this run's server
description:
  - Tries each candidate address over SSH with this run's pinned host key (StrictHostKeyChecking
    against I(known_hosts) only) and reads cloud-init's instance-id; the first address that answers
    with I(instance_id) wins. An impostor fails the key exchange before it sees a command.
  - Candidates are I(addresses), or the addresses of the checkin record at I(checkin_url), read again
    every round. Rounds repeat every I(delay) seconds until I(timeout).
  - The error names every address tried and why it was refused.
  - Runs on the controller (delegate_to localhost).
options:
  addresses: {description: addresses to try, type: list, elements: str}
  checkin_url: {description: the checkin record whose addresses to try, type: str}
  instance_id: {description: this run's UUID (cloud-init instance-id), type: str, required: true}
  known_hosts: {description: the run's known_hosts file (its one pinned key), type: path, required: true}
  private_key: {description: the orchestrator's SSH private key, type: path, required: true}
  user: {description: SSH user, type: str, default: root}
  timeout: {description: seconds to keep trying, type: int, default: 900}
  delay: {description: seconds between rounds, type: int, default: 5}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Find the server among the checked-in addresses
  uki_on_demand.baremetal.find_server:
    checkin_url: "http://service.example:8080/api/v1/checkins/{{ run_id }}"
    instance_id: "{{ run_id }}"
    known_hosts: /tmp/uod-run-node01/known_hosts
    private_key: ~/.ssh/id_ed25519
  delegate_to: localhost
"""

RETURN = r"""
address: {description: the address that is this server, returned: success, type: str}
refused: {description: every other address tried, with why it was refused, returned: always, type: dict}
waited: {description: seconds spent waiting for the server, returned: always, type: float}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.find_server import (
    NotFound, checkin_addresses, find_server)


def main():
    module = AnsibleModule(argument_spec=dict(addresses=dict(type="list", elements="str"),
                                              checkin_url=dict(type="str"),
                                              instance_id=dict(type="str", required=True),
                                              known_hosts=dict(type="path", required=True),
                                              private_key=dict(type="path", required=True),
                                              user=dict(type="str", default="root"),
                                              timeout=dict(type="int", default=900),
                                              delay=dict(type="int", default=5)),
                           required_one_of=[("addresses", "checkin_url")],
                           mutually_exclusive=[("addresses", "checkin_url")])
    p = module.params
    fixed = list(p["addresses"] or [])
    candidates = (lambda: fixed) if fixed else (lambda: checkin_addresses(p["checkin_url"]))
    started = time.monotonic()
    try:
        address, refused = find_server(candidates, p["instance_id"], p["known_hosts"], p["private_key"],
                                       p["timeout"], p["delay"], p["user"])
    except NotFound as err:
        module.fail_json(msg=str(err), refused=err.refused, waited=round(time.monotonic() - started, 2))
    module.exit_json(changed=False, address=address, refused=refused, waited=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
