# -*- coding: utf-8 -*-
# UEFI HTTP boot where a BMC has no Boot.HttpBootUri: the vendor's BIOS attributes for its HTTP boot
# device, which the firmware takes at the next reset (Dell iDRAC: HttpDev1*, HPE iLO: UrlBootFile).
# Each route is known by an attribute it has; this file owns their names.
from __future__ import annotations

import ipaddress

HTTP_BOOT_URI = "HttpBootUri"
LACKS = ("this BMC has no Boot.HttpBootUri and its BIOS has no HTTP boot device setting "
         "(Dell HttpDev1Uri, HPE UrlBootFile)")


def _dell(uri, address):
    attrs = {"HttpDev1EnDis": "Enabled", "HttpDev1Uri": uri, "HttpDev1Protocol": "IPv4",
             "HttpDev1DhcpEnDis": "Disabled" if address else "Enabled"}
    if address:
        attrs.update(HttpDev1Ip=address["ip"], HttpDev1Mask=address["mask"], HttpDev1Gateway=address["gateway"],
                     HttpDev1DnsDhcpEnDis="Disabled", HttpDev1Dns1=address["dns"])
    return attrs


def _hpe(uri, address):
    attrs = {"UrlBootFile": uri, "Dhcpv4": "Disabled" if address else "Enabled"}
    if address:
        attrs.update(Ipv4Address=address["ip"], Ipv4SubnetMask=address["mask"], Ipv4Gateway=address["gateway"],
                     Ipv4PrimaryDNS=address["dns"])
    return attrs


# route name -> (the attribute that marks it, the attributes to set)
BIOS_ROUTES = {
    "bios-dell": ("HttpDev1Uri", _dell),
    "bios-hpe": ("UrlBootFile", _hpe),
}


def route_of(boot, bios_attributes):
    """How this BMC takes an HTTP boot URI: HttpBootUri, a BIOS route's name, or None."""
    if HTTP_BOOT_URI in (boot or {}):
        return HTTP_BOOT_URI
    for name, (marker, _) in BIOS_ROUTES.items():
        if marker in (bios_attributes or {}):
            return name
    return None


def static_address(cidr, gateway="", dns=None):
    """The firmware's static address from "192.0.2.57/24", or None for DHCP ("")."""
    if not cidr:
        return None
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as err:
        raise ValueError("http_boot_address: %s" % err)
    if iface.network.prefixlen > 30:
        raise ValueError("http_boot_address: %s leaves no room for a gateway" % cidr)
    return {"ip": str(iface.ip), "mask": str(iface.netmask), "gateway": gateway or "0.0.0.0",
            "dns": (list(dns or []) or ["0.0.0.0"])[0]}


def bios_attributes(route, uri, address=None):
    """The attributes that make the firmware HTTP-boot `uri` (with `address`, else by DHCP)."""
    return BIOS_ROUTES[route][1](uri, address)
