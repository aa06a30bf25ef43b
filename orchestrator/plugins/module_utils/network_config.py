# -*- coding: utf-8 -*-
# The Netplan v2 network-config both OSes of a provisioned server get (cloud-init NoCloud): NICs
# matched by MAC (or the one NIC by its name, for NICs without a permanent MAC: Netplan matches the
# permanent one, which virtual NICs such as the lab's simulated servers' veths lack); the address, default route and DNS on the innermost interface (the VLAN when there
# is one, else the bond, else the one NIC).
from __future__ import annotations

import ipaddress
import re

BOND_MODES = ("active-backup", "802.3ad", "balance-xor", "balance-alb", "balance-tlb")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


class NetworkConfigError(ValueError):
    """Settings that give no usable network-config; the message names the variables."""


def _mac(value, name):
    mac = str(value).lower()
    if not _MAC.match(mac):
        raise NetworkConfigError("%s: %r is not a MAC address (six hex pairs separated by colons)" % (name, value))
    return mac


_NIC_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def network_config(address, subnet, gateway, dns=(), mac=None, bond_macs=(), bond_mode="active-backup", vlan=0, nic_name=""):
    """The network-config as a dict (dump it as YAML once, where it is written)."""
    bond_macs = [str(m) for m in (bond_macs or [])]
    macs = [m.lower() for m in bond_macs]
    if len(bond_macs) == 1 or any(not _MAC.match(m) for m in macs) or len(set(macs)) != len(macs):
        raise NetworkConfigError("server_bond_macs must list two or more distinct MAC addresses (or none); got %s" % bond_macs)
    if macs and nic_name:
        raise NetworkConfigError("server_nic_name names the one NIC of a server without a bond: unset it or server_bond_macs")
    try:
        vlan = int(vlan or 0)
    except (TypeError, ValueError):
        raise NetworkConfigError("server_vlan must be a VLAN id from 1 to 4094 (0: untagged); got %r" % (vlan,))
    if not 0 <= vlan <= 4094:
        raise NetworkConfigError("server_vlan must be a VLAN id from 1 to 4094 (0: untagged); got %d" % vlan)
    if bond_mode not in BOND_MODES:
        raise NetworkConfigError("server_bond_mode must be one of %s; got %r" % (", ".join(BOND_MODES), bond_mode))
    prefix = ipaddress.ip_network(str(subnet), strict=False).prefixlen
    layer3 = {
        "addresses": ["%s/%d" % (address, prefix)],
        "routes": [{"to": "default", "via": str(gateway)}],
        "nameservers": {"addresses": [str(d) for d in (dns or [])]},
    }
    config = {"version": 2}
    if macs:
        config["ethernets"] = {
            "bond0s%d" % i: {"match": {"macaddress": m}, "set-name": "bond0s%d" % i} for i, m in enumerate(macs)
        }
        parameters = {"mode": bond_mode, "mii-monitor-interval": 100}
        if bond_mode == "active-backup":
            parameters["primary"] = "bond0s0"
        elif bond_mode == "802.3ad":
            parameters.update({"lacp-rate": "fast", "transmit-hash-policy": "layer3+4"})
        # The first port's own MAC, as the kernel would pick: networkd otherwise derives one from the
        # machine-id, which differs between the two OSes (and every boot of the ephemeral one).
        config["bonds"] = {"bond0": {"macaddress": macs[0], "interfaces": sorted(config["ethernets"]), "parameters": parameters}}
        parent = config["bonds"]["bond0"]
    elif nic_name:
        if not _NIC_NAME.match(str(nic_name)):
            raise NetworkConfigError("server_nic_name: %r is not an interface name (1 to 15 letters, digits, _ . -)" % (nic_name,))
        config["ethernets"] = {"eth0": {"match": {"name": str(nic_name)}}}
        parent = config["ethernets"]["eth0"]
    else:
        if not mac:
            raise NetworkConfigError("server_mac is required: the MAC of the NIC that gets the address")
        config["ethernets"] = {"eth0": {"match": {"macaddress": _mac(mac, "server_mac")}}}
        parent = config["ethernets"]["eth0"]
    if vlan:
        link = "bond0" if macs else "eth0"
        config["vlans"] = {"%s.%d" % (link, vlan): dict({"id": vlan, "link": link}, **layer3)}
    else:
        parent.update(layer3)
    return config
