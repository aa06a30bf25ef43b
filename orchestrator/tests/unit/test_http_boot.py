# UEFI HTTP boot where a BMC has no Boot.HttpBootUri: which route a BMC offers, the static address
# for its firmware, and the vendor attributes that make its next boot fetch the URI.
import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils import http_boot

URI = "http://192.0.2.1:8080/artifacts/a/uki.efi"


@pytest.mark.parametrize("boot, attributes, route", [
    ({"HttpBootUri": None}, {"HttpDev1Uri": ""}, "HttpBootUri"),  # the standard property wins
    ({}, {"HttpDev1Uri": "", "HttpDev1EnDis": "Disabled"}, "bios-dell"),
    ({}, {"UrlBootFile": "", "Dhcpv4": "Enabled"}, "bios-hpe"),
    ({}, {"BootMode": "UEFI"}, None),  # Lenovo: no HTTP boot at all
    ({}, {}, None),
])
def test_route_of(boot, attributes, route):
    assert http_boot.route_of(boot, attributes) == route


def test_static_address():
    assert http_boot.static_address("192.0.2.57/24", "192.0.2.1", ["192.0.2.1", "192.0.2.2"]) == {
        "ip": "192.0.2.57", "mask": "255.255.255.0", "gateway": "192.0.2.1", "dns": "192.0.2.1"}
    assert http_boot.static_address("") is None
    # Absent gateway and DNS are the firmware's "none".
    assert http_boot.static_address("198.51.100.9/25")["gateway"] == "0.0.0.0"


@pytest.mark.parametrize("cidr", ["192.0.2.57", "192.0.2.300/24", "2001:db8::1/64", "192.0.2.57/31"])
def test_static_address_refusals_name_the_option(cidr):
    with pytest.raises(ValueError, match="^http_boot_address: "):
        http_boot.static_address(cidr if "/" in cidr else cidr + "/33")


def test_dell_attributes_with_and_without_an_address():
    address = http_boot.static_address("192.0.2.57/24", "192.0.2.1", ["192.0.2.1"])
    assert http_boot.bios_attributes("bios-dell", URI, address) == {
        "HttpDev1EnDis": "Enabled", "HttpDev1Uri": URI, "HttpDev1Protocol": "IPv4", "HttpDev1DhcpEnDis": "Disabled",
        "HttpDev1Ip": "192.0.2.57", "HttpDev1Mask": "255.255.255.0", "HttpDev1Gateway": "192.0.2.1",
        "HttpDev1DnsDhcpEnDis": "Disabled", "HttpDev1Dns1": "192.0.2.1"}
    assert http_boot.bios_attributes("bios-dell", URI)["HttpDev1DhcpEnDis"] == "Enabled"
    assert "HttpDev1Ip" not in http_boot.bios_attributes("bios-dell", URI)


def test_hpe_attributes():
    address = http_boot.static_address("192.0.2.57/24", "192.0.2.1", [])
    assert http_boot.bios_attributes("bios-hpe", URI, address) == {
        "UrlBootFile": URI, "Dhcpv4": "Disabled", "Ipv4Address": "192.0.2.57", "Ipv4SubnetMask": "255.255.255.0",
        "Ipv4Gateway": "192.0.2.1", "Ipv4PrimaryDNS": "0.0.0.0"}
    assert http_boot.bios_attributes("bios-hpe", URI) == {"UrlBootFile": URI, "Dhcpv4": "Enabled"}
