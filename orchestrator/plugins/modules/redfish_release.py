#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_release
short_description: Give a server's BMC back as it was found: off, no media, no boot override
description:
  - Ejects the virtual CD, clears the boot override and HttpBootUri, and powers the server off
    (GracefulShutdown, then ForceOff). Every step is tried even when an earlier one failed.
  - With I(fail_on_incomplete=false) a step the BMC refused is reported as a warning naming the BMC's
    answer and the state left behind, so that it does not turn the workflow's result into a failure.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  secure_boot_enabled: {description: SecureBootEnable to set back (as the run found it); omitted, Secure Boot is left alone, type: bool}
  graceful_timeout: {description: seconds GracefulShutdown gets, type: int, default: 60}
  power_timeout: {description: seconds to reach Off, type: int, default: 180}
  eject_timeout: {description: seconds until the ejected slot must read empty, type: int, default: 60}
  fail_on_incomplete: {description: fail when a step was refused (else warn), type: bool, default: true}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Give the BMC back
  uki_on_demand.baremetal.redfish_release:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
  delegate_to: localhost
"""

RETURN = r"""
done: {description: the steps that worked, returned: success, type: list}
problems: {description: the steps the BMC refused, with its answer, returned: success, type: list}
power_state: {description: PowerState at the end, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import (
    BMC_ARGUMENT_SPEC, RedfishError, give_back, run)


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              graceful_timeout=dict(type="int", default=60),
                                              power_timeout=dict(type="int", default=180),
                                              eject_timeout=dict(type="int", default=60),
                                              fail_on_incomplete=dict(type="bool", default=True),
                                              secure_boot_enabled=dict(type="bool")))
    p = module.params

    def act(bmc):
        done, problems = give_back(bmc, p["graceful_timeout"], p["power_timeout"], p["eject_timeout"], p["secure_boot_enabled"])
        if problems and p["fail_on_incomplete"]:
            raise RedfishError("Give the BMC back", "; ".join(problems), bmc.last_status)
        for problem in problems:
            module.warn("%s: the BMC was not fully given back: %s (power state %s)" % (p["bmc_host"], problem, bmc.power_state))
        return dict(changed=bool(done), done=done, problems=problems)

    run(module, act)


if __name__ == "__main__":
    main()
