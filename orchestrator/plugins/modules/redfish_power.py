#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_power
short_description: Power a server on, off or through a cycle, and wait for the state
description:
  - C(off) presses the power button (GracefulShutdown) and cuts the power (ForceOff) when the OS has
    not shut down within I(graceful_timeout); C(on) powers on; C(cycle) uses PowerCycle where the BMC
    offers it and the server is on, else ForceOff then On. Each waits until the BMC reports the state.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  state: {description: the power state to reach, type: str, required: true, choices: ["on", "off", cycle]}
  graceful_timeout: {description: seconds GracefulShutdown gets (0 cuts the power at once), type: int, default: 60}
  power_timeout: {description: seconds to reach the state, type: int, default: 180}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Power the server off
  uki_on_demand.baremetal.redfish_power:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
    state: "off"
  delegate_to: localhost
"""

RETURN = r"""
how: {description: what was done (GracefulShutdown, ForceOff, On, PowerCycle, ForceOff+On, already off, already on), returned: success, type: str}
power_state: {description: PowerState at the end, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import BMC_ARGUMENT_SPEC, run


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              state=dict(type="str", required=True, choices=["on", "off", "cycle"]),
                                              graceful_timeout=dict(type="int", default=60),
                                              power_timeout=dict(type="int", default=180)))
    p = module.params

    def act(bmc):
        if p["state"] == "off":
            how = bmc.power_off(p["graceful_timeout"], p["power_timeout"])
        elif p["state"] == "on":
            how = bmc.power_on(p["power_timeout"])
        else:
            how = bmc.power_cycle(p["power_timeout"])
        return dict(changed=not how.startswith("already"), how=how)

    run(module, act)


if __name__ == "__main__":
    main()
