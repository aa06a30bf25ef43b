#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_media
short_description: Insert an ISO into a server's virtual CD, or eject it
description:
  - The slot is the first one that takes a CD or DVD and can be filled (an InsertMedia action or
    PATCH), under the System where it has virtual media, else under its Manager; or I(slot).
  - C(inserted) ejects whatever the slot holds first; C(ejected) waits until the slot reads empty
    (some BMCs report ejected media as inserted for a while).
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  state: {description: inserted or ejected, type: str, required: true, choices: [inserted, ejected]}
  image: {description: the ISO URL (state inserted), type: str}
  slot: {description: path of the slot to use instead of the chosen one, type: str}
  eject_timeout: {description: seconds until an ejected slot must read empty, type: int, default: 60}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Insert the ISO as virtual CD
  uki_on_demand.baremetal.redfish_media:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
    state: inserted
    image: "https://service.example/artifacts/0123/boot.iso"
  delegate_to: localhost
"""

RETURN = r"""
slot: {description: the slot used, returned: success, type: str}
power_state: {description: PowerState, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import BMC_ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              state=dict(type="str", required=True, choices=["inserted", "ejected"]),
                                              image=dict(type="str"),
                                              slot=dict(type="str"),
                                              eject_timeout=dict(type="int", default=60)),
                           required_if=[("state", "inserted", ["image"])])
    p = module.params

    def act(bmc):
        slot = p["slot"] or bmc.cd_slot()["path"]
        changed = bmc.eject(slot, p["eject_timeout"])
        if p["state"] == "inserted":
            bmc.insert(slot, p["image"])
            changed = True
        return dict(changed=changed, slot=slot)

    run(module, act)


if __name__ == "__main__":
    main()
