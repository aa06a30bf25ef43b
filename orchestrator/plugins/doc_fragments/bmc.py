# -*- coding: utf-8 -*-
# The connection options every Redfish module of the collection takes.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  bmc_host: {description: BMC address (host or host:port; HTTPS, certificate not checked), type: str, required: true}
  bmc_username: {description: BMC user, type: str, required: true}
  bmc_password: {description: BMC password (never logged), type: str, required: true}
  bmc_resource_id: {description: ComputerSystem Id; empty for the BMC's only system, type: str, default: ""}
  request_timeout: {description: seconds one request may take, type: int, default: 60}
  change_retries: {description: retries of a change the BMC refuses for a while (POST, busy, media still in), type: int, default: 12}
  change_delay: {description: seconds between those retries, type: int, default: 5}
requirements: [python3-sushy]
notes:
  - Built on OpenStack sushy (sessions or Basic authentication, ETags, @Redfish.Settings).
"""
