#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_info
short_description: What a server's Redfish BMC offers the workflows
description:
  - Reads the ComputerSystem (found by Id, or the BMC's only one), its power state, the reset types
    it offers, the boot override targets, whether it has Boot.HttpBootUri, and the virtual media slot
    that takes a CD (under the System, else under the Manager that manages it).
  - Changes nothing; supports check mode.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Read what the BMC offers
  uki_on_demand.baremetal.redfish_info:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
  delegate_to: localhost
  register: bmc
"""

RETURN = r"""
system_id: {description: the ComputerSystem Id, returned: success, type: str}
power_state: {description: PowerState, returned: always, type: str}
reset_types: {description: ResetType values the BMC allows, returned: success, type: list}
boot_targets: {description: allowed BootSourceOverrideTarget values, returned: success, type: list}
http_boot_uri_supported: {description: whether Boot.HttpBootUri exists, returned: success, type: bool}
http_boot_route: {description: "how an HTTP boot URI is set: HttpBootUri, bios-dell, bios-hpe, or null (not at all)", returned: success, type: str}
secure_boot: {description: "SecureBootEnable (enabled), SecureBootCurrentBoot (current_boot), SecureBootMode (mode); null without a SecureBoot resource", returned: success, type: dict}
boot_enabled_values: {description: the BootSourceOverrideEnabled values the BMC allows, returned: success, type: list}
cd_slot: {description: path of the virtual media slot used for the CD (null when none), returned: success, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import BMC_ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=BMC_ARGUMENT_SPEC, supports_check_mode=True)
    run(module, lambda bmc: dict(changed=False, **bmc.discover()))


if __name__ == "__main__":
    main()
