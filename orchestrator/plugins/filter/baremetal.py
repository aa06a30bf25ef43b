# -*- coding: utf-8 -*-
# The collection's filters: thin wrappers over module_utils (the rules and their tests live there).
from __future__ import annotations

DOCUMENTATION = r"""
name: baremetal
short_description: Addresses, network-config and disk choice of the uki-on-demand workflows
description:
  - ipam_address(subnet, bmc_host, bmc_resource_id) - the design's deterministic address.
  - usable_address(address, subnet, gateway) - the address, or an error when it is outside the subnet or
    is its network, broadcast or gateway address.
  - shared_with(hostvars, hosts, host, fact) - the other hosts whose fact (an address) equals the host's.
  - network_config(address, subnet, gateway, dns, mac, bond_macs, bond_mode, vlan, nic_name) - the Netplan v2 dict.
  - target_disk(hw_inventory, serial, wwn) - the inventory entry of the one matching disk.
  - nocloud_yaml(data, cloud_config=false) - the text of a NoCloud seed file (user-data with its header).
  - pinned_ssh_args(known_hosts) - the SSH options that trust only the run's pinned host key, as one string
    (ansible_ssh_common_args).
  - predicted_pcr11(build_status) - the PCR 11 the service predicts for the booted ephemeral OS ('' if none).
  - with_measured_boot(report, build_id, expected) - the hw-inventory report with measured_boot (expected,
    read, matched) when the server has a TPM and there is a prediction.
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils import disks, find_server, ipam, measured_boot, network_config as netcfg, nocloud


def _wrap(function, errors):
    def filter_(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except errors as err:
            raise AnsibleFilterError(str(err))
    filter_.__name__ = function.__name__
    return filter_


def ipam_address(subnet, bmc_host, bmc_resource_id):
    return ipam.ipam_address(bmc_host, bmc_resource_id, subnet)


def shared_with(hostvars, hosts, me, fact):
    """The other hosts whose `fact` (an address) is the same as `me`'s."""
    addresses = {h: (hostvars[h].get(fact) if hasattr(hostvars[h], "get") else None) for h in hosts}
    return ipam.shared_with(me, addresses)


class FilterModule:
    def filters(self):
        return {
            "ipam_address": _wrap(ipam_address, ipam.IpamError),
            "usable_address": _wrap(ipam.check_address, ipam.IpamError),
            "shared_with": shared_with,
            "network_config": _wrap(netcfg.network_config, (netcfg.NetworkConfigError, ValueError)),
            "target_disk": _wrap(disks.select_disk, disks.DiskChoiceError),
            "nocloud_yaml": nocloud.nocloud_yaml,
            "pinned_ssh_args": lambda known_hosts: " ".join(find_server.pinned_ssh_options(known_hosts)),
            "predicted_pcr11": measured_boot.predicted_pcr11,
            "with_measured_boot": measured_boot.with_measured_boot,
        }
