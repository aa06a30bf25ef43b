# -*- coding: utf-8 -*-
# The design's deterministic IPAM (seed "Deterministic IPAM offset calculation") and the checks an
# address must pass. Pure Python (ipaddress, hashlib) so the rule has one owner and unit tests.
from __future__ import annotations

import hashlib
import ipaddress


class IpamError(ValueError):
    """An address that cannot be given out; the message names the inputs."""


def _network(subnet):
    try:
        network = ipaddress.ip_network(str(subnet), strict=False)
    except ValueError as err:
        raise IpamError("server_subnet %r is not a CIDR: %s" % (subnet, err))
    if network.version != 4:
        raise IpamError("server_subnet %s is IPv6: the IPAM of this design hands out IPv4 addresses only" % subnet)
    # The design's expression takes (size - 3) host offsets: a /31 or /32 has none.
    if network.prefixlen > 30:
        raise IpamError("server_subnet %s is a /%d: the IPAM needs at least a /30 (network, gateway, host, broadcast)"
                        % (subnet, network.prefixlen))
    return network


def ipam_offset(bmc_host, bmc_resource_id, size):
    """sha256("bmc_host/bmc_resource_id"), first 8 hex digits, modulo (size - 3), plus 2."""
    digest = hashlib.sha256(("%s/%s" % (bmc_host, bmc_resource_id)).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % (size - 3) + 2


def ipam_address(bmc_host, bmc_resource_id, subnet):
    """The address the design's expression gives; it counts from the network address, also for a
    subnet written with host bits (10.0.10.7/24 gives what 10.0.10.0/24 gives)."""
    if not bmc_resource_id:
        raise IpamError("set server_host, or bmc_resource_id for the address derived from the BMC identity")
    network = _network(subnet)
    return str(network.network_address + ipam_offset(bmc_host, bmc_resource_id, network.num_addresses))


def check_address(address, subnet, gateway):
    """Refuses an address that is outside the subnet or is its network, broadcast or gateway address."""
    network = _network(subnet)
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        raise IpamError("address %r is not an IPv4 address" % (address,))
    if ip not in network or ip in (network.network_address, network.broadcast_address) or str(ip) == str(gateway):
        raise IpamError("address %s cannot be used in %s (gateway %s): it must be a host address of the subnet, "
                        "not its network, broadcast or gateway address" % (address, subnet, gateway))
    return str(ip)


def shared_with(me, addresses):
    """The other hosts that would get the same address as `me` ({host: address} of the whole run)."""
    mine = addresses.get(me)
    return sorted(host for host, address in addresses.items() if host != me and address == mine and mine)
