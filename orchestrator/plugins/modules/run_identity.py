#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: run_identity
short_description: Give one run on one server its identity, or remove it
description:
  - C(present) makes a UUID (the cloud-init instance-id and checkin id) and an ed25519 SSH host key
    pair for this run only, in the private directory I(run_dir) on the controller, and a known_hosts
    file that trusts that one key for any address. The private key stays in the file (the image is
    built from it); nothing secret is returned.
  - C(absent) removes I(run_dir).
options:
  run_dir: {description: private directory for this run's secrets, type: path, required: true}
  comment: {description: comment of the host key, type: str, default: uki-on-demand}
  state: {description: present or absent, type: str, choices: [present, absent], default: present}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Give this run its identity
  uki_on_demand.baremetal.run_identity:
    run_dir: "/tmp/uod-run-{{ inventory_hostname }}"
  delegate_to: localhost
  register: run
"""

RETURN = r"""
run_id: {description: the run's UUID, returned: state present, type: str}
host_key: {description: path of the private host key, returned: state present, type: str}
host_key_pub: {description: the public host key line, returned: state present, type: str}
host_key_fingerprint: {description: its SHA256 fingerprint (as ssh-keygen -l shows it), returned: state present, type: str}
known_hosts: {description: path of the known_hosts file trusting only that key, returned: state present, type: str}
"""

import os
import shutil
import uuid

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(run_dir=dict(type="path", required=True),
                                              comment=dict(type="str", default="uki-on-demand"),
                                              state=dict(type="str", choices=["present", "absent"], default="present")))
    run_dir = module.params["run_dir"]
    if module.params["state"] == "absent":
        existed = os.path.isdir(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        module.exit_json(changed=existed)
    # A new identity every run: a stale directory from a killed run is replaced, never reused.
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir, mode=0o700)
    run_id = str(uuid.uuid4())
    key = os.path.join(run_dir, "ssh_host_ed25519_key")
    module.run_command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "%s-%s" % (module.params["comment"], run_id), "-f", key],
                       check_rc=True)
    with open(key + ".pub") as f:
        pub = f.read().strip()
    fingerprint = module.run_command(["ssh-keygen", "-l", "-E", "sha256", "-f", key + ".pub"], check_rc=True)[1].split()[1]
    known_hosts = os.path.join(run_dir, "known_hosts")
    with open(known_hosts, "w") as f:
        f.write("* %s\n" % " ".join(pub.split()[:2]))
    os.chmod(known_hosts, 0o600)
    module.exit_json(changed=True, run_id=run_id, host_key=key, host_key_pub=pub, host_key_fingerprint=fingerprint,
                     known_hosts=known_hosts, run_dir=run_dir)


if __name__ == "__main__":
    main()
