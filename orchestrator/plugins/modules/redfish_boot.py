#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_boot
short_description: Set a server's boot override, and its HttpBootUri
description:
  - Sets BootSourceOverrideTarget, BootSourceOverrideEnabled and BootSourceOverrideMode (through the
    System's @Redfish.Settings resource where the BMC has one, with its ETag).
  - I(http_boot_uri) is set first, where the BMC takes it - Boot.HttpBootUri, else the vendor's BIOS
    HTTP boot device (Dell HttpDev1*, HPE UrlBootFile) committed to the next reset. A BMC with
    neither fails with a message saying so. An empty string clears HttpBootUri (the BIOS device stays).
  - I(enabled=Continuous) on a BMC that allows only Once and Disabled sets Once (returned as
    I(enabled)); the workflow sets the override again before each boot.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  target: {description: BootSourceOverrideTarget (Cd, Hdd, UefiHttp, None, ...), type: str}
  enabled: {description: BootSourceOverrideEnabled, type: str, choices: [Once, Continuous, Disabled]}
  mode: {description: BootSourceOverrideMode, type: str, choices: [UEFI, Legacy], default: UEFI}
  http_boot_uri: {description: the URI the next UefiHttp boot fetches ("" clears Boot.HttpBootUri), type: str}
  http_boot_address:
    description: The firmware's static address and prefix (192.0.2.57/24) for the BIOS route; empty is DHCP.
    type: str
    default: ""
  http_boot_gateway: {description: gateway of the static address, type: str, default: ""}
  http_boot_dns: {description: DNS servers of the static address (the first is used), type: list, elements: str, default: []}
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
http_boot_route: {description: "HttpBootUri, bios-dell or bios-hpe: how the URI was set", returned: with http_boot_uri, type: str}
enabled: {description: the BootSourceOverrideEnabled set, returned: with target or enabled, type: str}
power_state: {description: PowerState, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.http_boot import HTTP_BOOT_URI, static_address
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import BMC_ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              target=dict(type="str"),
                                              enabled=dict(type="str", choices=["Once", "Continuous", "Disabled"]),
                                              mode=dict(type="str", choices=["UEFI", "Legacy"], default="UEFI"),
                                              http_boot_uri=dict(type="str"),
                                              http_boot_address=dict(type="str", default=""),
                                              http_boot_gateway=dict(type="str", default=""),
                                              http_boot_dns=dict(type="list", elements="str", default=[])),
                           required_one_of=[("target", "enabled", "http_boot_uri")])
    p = module.params

    try:
        address = static_address(p["http_boot_address"], p["http_boot_gateway"], p["http_boot_dns"])
    except ValueError as err:
        module.fail_json(msg=str(err))

    def act(bmc):
        result = dict(changed=True)
        if p["http_boot_uri"]:
            result["http_boot_route"] = bmc.set_http_boot(p["http_boot_uri"], address)
        elif p["http_boot_uri"] == "" and bmc.http_boot_route()[0] == HTTP_BOOT_URI:
            bmc.set_http_boot_uri("")
        if p["target"] or p["enabled"]:
            result["enabled"] = bmc.set_boot(p["target"], p["enabled"], p["mode"] if p["enabled"] != "Disabled" else None)
            if p["enabled"] and result["enabled"] != p["enabled"]:
                module.warn("%s allows only Once and Disabled: set Once" % p["bmc_host"])
        return result

    run(module, act)


if __name__ == "__main__":
    main()
