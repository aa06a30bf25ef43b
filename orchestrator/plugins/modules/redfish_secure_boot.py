# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
module: redfish_secure_boot
short_description: Enroll a certificate in a server's Secure Boot db and set its Secure Boot switch
description:
  - Reads the System's SecureBoot resource. With I(certificate), makes sure db holds it, enrolling it
    by a POST to SecureBootDatabases/db/Certificates when it is missing (Dell iDRAC's shape). A BMC
    without SecureBootDatabases (HPE iLO, Lenovo XCC) fails with what to do by hand, unless
    I(certificate_enrolled_by_hand) says it was done.
  - With I(enabled), sets SecureBootEnable (the firmware takes it at the next boot).
  - Returns the state found before any change (I(found)), for giving the BMC back as it was.
extends_documentation_fragment: [uki_on_demand.baremetal.bmc]
options:
  certificate: {description: PEM certificate that must be in db (the service's signing certificate), type: str}
  certificate_enrolled_by_hand: {description: the BMC cannot enroll it and it was enrolled otherwise, type: bool, default: false}
  enabled: {description: SecureBootEnable to set, type: bool}
author: uki-on-demand
"""

EXAMPLES = r"""
- name: Enforce Secure Boot with the service's certificate in db
  uki_on_demand.baremetal.redfish_secure_boot:
    bmc_host: "{{ bmc_host }}"
    bmc_username: "{{ bmc_username }}"
    bmc_password: "{{ bmc_password }}"
    certificate: "{{ lookup('ansible.builtin.file', 'service-secure-boot.pem') }}"
    enabled: true
  delegate_to: localhost
"""

RETURN = r"""
found: {description: "Secure Boot as found: enabled, current_boot, mode", returned: success, type: dict}
enrolled: {description: whether the certificate was enrolled by this call, returned: success, type: bool}
power_state: {description: PowerState, returned: always, type: str}
status: {description: the BMC's last HTTP status, returned: always, type: raw}
waited: {description: seconds spent on the BMC, returned: always, type: float}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.redfish import (
    BMC_ARGUMENT_SPEC, RedfishError, SecureBoot, pem_fingerprint, run)


def main():
    module = AnsibleModule(argument_spec=dict(BMC_ARGUMENT_SPEC,
                                              certificate=dict(type="str"),
                                              certificate_enrolled_by_hand=dict(type="bool", default=False),
                                              enabled=dict(type="bool")),
                           required_one_of=[("certificate", "enabled")])
    p = module.params
    fingerprint = None
    if p["certificate"]:
        try:
            fingerprint = pem_fingerprint(p["certificate"])
        except ValueError:
            module.fail_json(msg="certificate: not a PEM X.509 certificate")

    def act(bmc):
        sb = SecureBoot(bmc)
        found = sb.state()
        enrolled = False
        if fingerprint and not p["certificate_enrolled_by_hand"]:
            certificates = sb.certificates_path()
            if certificates is None:
                raise RedfishError("Enroll the certificate in db", (
                    "this BMC offers no SecureBootDatabases to enroll into (Dell iDRAC does; HPE iLO and Lenovo XCC "
                    "do not): enroll the certificate with SHA-256 %s in db by hand (firmware setup or the vendor's "
                    "tool), then set certificate_enrolled_by_hand" % fingerprint))
            if not sb.enrolled(certificates, fingerprint):
                sb.enroll(certificates, p["certificate"])
                enrolled = True
        if p["enabled"] is not None and p["enabled"] != found["enabled"]:
            sb.set_enabled(p["enabled"])
        changed = enrolled or (p["enabled"] is not None and p["enabled"] != found["enabled"])
        return dict(changed=changed, found=found, enrolled=enrolled)

    run(module, act)


if __name__ == "__main__":
    main()
