#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: nocloud_seed
short_description: Seed the NoCloud data of an OS just written to a disk
description:
  - Runs on the server (the ephemeral OS). Lets the kernel read the disk's new partition table, finds
    the one partition whose GPT type is I(root_type_guid), mounts it, writes I(files) into its
    /var/lib/cloud/seed/nocloud and unmounts it, in one round trip.
options:
  device: {description: the disk the image was written to, type: path, required: true}
  root_type_guid: {description: GPT type GUID of the root partition (Discoverable Partitions Specification), type: str, required: true}
  files: {description: "file name in the seed directory: its text (user-data holds the host key: never logged)", type: dict, required: true}
  fstype: {description: file system of the root partition, type: str, default: ext4}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Seed the installed OS's NoCloud data
  uki_on_demand.baremetal.nocloud_seed:
    device: /dev/nvme0n1
    root_type_guid: 4f68bce3-e8cd-4db1-96e7-fbcaf984b709
    files:
      meta-data: "instance-id: 6c0f...\nlocal-hostname: node01\n"
"""

RETURN = r"""
root_partition: {description: the partition seeded, returned: success, type: str}
waited: {description: seconds in the server's own commands (partprobe, udev, mount, umount), returned: success, type: float}
files: {description: the file names written, returned: success, type: list}
"""

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.disks import DiskChoiceError, root_partition

SEED = "var/lib/cloud/seed/nocloud"
PRIVATE = ("user-data",)
PARTITION_WAIT_S = 10


def main():
    module = AnsibleModule(argument_spec=dict(device=dict(type="path", required=True),
                                              root_type_guid=dict(type="str", required=True),
                                              files=dict(type="dict", required=True, no_log=True),
                                              fstype=dict(type="str", default="ext4")))
    p = module.params
    waited = [0.0]

    def run(argv):
        started = time.monotonic()
        out = module.run_command(argv, check_rc=True)[1]
        waited[0] += time.monotonic() - started
        return out

    run(["partprobe", p["device"]])
    run(["udevadm", "settle"])
    # settle returns at once where no udev runs (a container, whose manager makes the nodes): the
    # partitions may show a moment later, so look again for a few seconds before giving up.
    deadline = time.monotonic() + PARTITION_WAIT_S
    while True:
        listing = json.loads(run(["lsblk", "-J", "-o", "PATH,PARTTYPE", p["device"]]))
        try:
            root = root_partition(listing, p["root_type_guid"])
            if os.path.exists(root):
                break
            error = "%s has no device node" % root
        except DiskChoiceError as err:
            error = str(err)
        if time.monotonic() > deadline:
            module.fail_json(msg="%s: %s" % (p["device"], error))
        time.sleep(0.2)
    mountpoint = tempfile.mkdtemp(prefix="uod-root-")
    run(["mount", "-t", p["fstype"], root, mountpoint])
    try:
        seed = os.path.join(mountpoint, SEED)
        os.makedirs(seed, mode=0o755, exist_ok=True)
        for name, text in p["files"].items():
            path = os.path.join(seed, os.path.basename(name))
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o600 if name in PRIVATE else 0o644)
    finally:
        run(["umount", mountpoint])
        os.rmdir(mountpoint)
    module.exit_json(changed=True, root_partition=root, files=sorted(p["files"]), waited=round(waited[0], 2))


if __name__ == "__main__":
    main()
