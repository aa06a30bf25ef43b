#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_boot
short_description: Set a server's boot override, and its HttpBootUri
description:
  - Sets BootSourceOverrideTarget, BootSourceOverrideEnabled and BootSourceOverrideMode (through the
    System's @Redfish.Settings resource where the BMC has one, with its ETag).
  - I(http_boot_uri) sets Boot.HttpBootUri first (an empty string clears it); a BMC without the
    property fails with a message saying so.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  target: {description: BootSourceOverrideTarget (Cd, Hdd, UefiHttp, None, ...), type: str}
  enabled: {description: BootSourceOverrideEnabled, type: str, choices: [Once, Continuous, Disabled]}
  mode: {description: BootSourceOverrideMode, type: str, choices: [UEFI, Legacy], default: UEFI}
  http_boot_uri: {description: Boot.HttpBootUri to set ("" clears it), type: str}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Boot once from the UKI by UEFI HTTP Boot
  uki_on_demand.baremetal.redfish_boot:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
    http_boot_uri: "http://service.example/artifacts/0123/uki.efi"
    target: UefiHttp
    enabled: Once
  delegate_to: localhost
"""

RETURN = r"""
power_state: {description: PowerState, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import BMC_ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              target=dict(type="str"),
                                              enabled=dict(type="str", choices=["Once", "Continuous", "Disabled"]),
                                              mode=dict(type="str", choices=["UEFI", "Legacy"], default="UEFI"),
                                              http_boot_uri=dict(type="str")),
                           required_one_of=[("target", "enabled", "http_boot_uri")])
    p = module.params

    def act(bmc):
        if p["http_boot_uri"] is not None:
            bmc.set_http_boot_uri(p["http_boot_uri"])
        if p["target"] or p["enabled"]:
            bmc.set_boot(p["target"], p["enabled"], p["mode"] if p["enabled"] != "Disabled" else None)
        return dict(changed=True)

    run(module, act)


if __name__ == "__main__":
    main()
