# The network-config filter: each shape it gives (NIC, VLAN on a NIC, bond, bond + VLAN, 802.3ad) and
# each refusal.
import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.network_config import (
    NetworkConfigError, network_config)
from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.nocloud import nocloud_yaml

L3 = {"addresses": ["192.0.2.77/24"], "routes": [{"to": "default", "via": "192.0.2.1"}], "nameservers": {"addresses": ["192.0.2.53"]}}
MACS = ["52:54:00:AA:00:01", "52:54:00:aa:00:02"]
PORTS = {
    "bond0s0": {"match": {"macaddress": "52:54:00:aa:00:01"}, "set-name": "bond0s0"},
    "bond0s1": {"match": {"macaddress": "52:54:00:aa:00:02"}, "set-name": "bond0s1"},
}
ACTIVE_BACKUP = {"macaddress": "52:54:00:aa:00:01", "interfaces": ["bond0s0", "bond0s1"],
                 "parameters": {"mode": "active-backup", "mii-monitor-interval": 100, "primary": "bond0s0"}}


def config(**kwargs):
    return network_config("192.0.2.77", "192.0.2.0/24", "192.0.2.1", ["192.0.2.53"], **kwargs)


def test_the_address_on_the_nic():
    assert config(mac="52:54:00:00:00:01") == {"version": 2, "ethernets": {"eth0": dict({"match": {"macaddress": "52:54:00:00:00:01"}}, **L3)}}


def test_the_address_on_a_vlan_of_the_nic():
    assert config(mac="52:54:00:00:00:01", vlan=7) == {
        "version": 2, "ethernets": {"eth0": {"match": {"macaddress": "52:54:00:00:00:01"}}},
        "vlans": {"eth0.7": dict({"id": 7, "link": "eth0"}, **L3)}}


def test_the_address_on_a_bond_with_the_first_ports_mac():
    assert config(bond_macs=MACS) == {"version": 2, "ethernets": PORTS, "bonds": {"bond0": dict(ACTIVE_BACKUP, **L3)}}


def test_the_address_on_a_vlan_of_the_bond():
    assert config(bond_macs=MACS, vlan="100") == {
        "version": 2, "ethernets": PORTS, "bonds": {"bond0": ACTIVE_BACKUP},
        "vlans": {"bond0.100": dict({"id": 100, "link": "bond0"}, **L3)}}


def test_lacp():
    bond = config(bond_macs=MACS, bond_mode="802.3ad")["bonds"]["bond0"]
    assert bond["parameters"] == {"mode": "802.3ad", "mii-monitor-interval": 100, "lacp-rate": "fast", "transmit-hash-policy": "layer3+4"}


def test_a_non_canonical_subnet_gives_its_prefix():
    assert network_config("10.0.10.9", "10.0.10.7/24", "10.0.10.1", mac="52:54:00:00:00:01")["ethernets"]["eth0"]["addresses"] == ["10.0.10.9/24"]


@pytest.mark.parametrize("kwargs, message", [
    ({"bond_macs": ["52:54:00:aa:00:01"]}, "server_bond_macs must list two or more distinct MAC addresses"),
    ({"bond_macs": ["52:54:00:aa:00:01", "not-a-mac"]}, "server_bond_macs must list two or more distinct"),
    ({"bond_macs": ["52:54:00:aa:00:01", "52:54:00:AA:00:01"]}, "server_bond_macs must list two or more distinct"),
    ({"mac": "52:54:00:00:00:01", "vlan": 4095}, "server_vlan must be a VLAN id from 1 to 4094"),
    ({"mac": "52:54:00:00:00:01", "vlan": "ten"}, "server_vlan must be a VLAN id"),
    ({"bond_macs": MACS, "bond_mode": "round-robin"}, "server_bond_mode must be one of"),
    ({}, "server_mac is required"),
    ({"mac": "52-54-00-00-00-01"}, "server_mac: '52-54-00-00-00-01' is not a MAC address"),
])
def test_refusals_name_the_variable(kwargs, message):
    with pytest.raises(NetworkConfigError, match=message):
        config(**kwargs)


def test_one_yaml_dump_keeps_the_structure():
    import yaml
    data = config(bond_macs=MACS, vlan=100)
    assert yaml.safe_load(nocloud_yaml(data)) == data
    assert nocloud_yaml({"a": 1}, cloud_config=True) == "#cloud-config\na: 1\n"
    assert nocloud_yaml({}, cloud_config=True) == "#cloud-config\n"


def test_ansibles_own_string_types_dump_as_plain_text():
    from ansible.utils.unsafe_proxy import AnsibleUnsafeText
    assert nocloud_yaml({"instance-id": AnsibleUnsafeText("abc"), "list": [AnsibleUnsafeText("x")]}) == "instance-id: abc\nlist:\n- x\n"


def test_the_nic_by_name_where_it_has_no_permanent_mac():
    assert config(mac="52:54:00:00:00:01", nic_name="enp0s3") == {"version": 2, "ethernets": {"eth0": dict({"match": {"name": "enp0s3"}}, **L3)}}
    assert config(nic_name="enp0s3", vlan=100)["vlans"]["eth0.100"]["link"] == "eth0"


def test_a_nic_name_that_is_none_or_comes_with_a_bond():
    with pytest.raises(NetworkConfigError, match="server_nic_name"):
        config(nic_name="en p0")
    with pytest.raises(NetworkConfigError, match="server_nic_name"):
        config(nic_name="enp0s3", bond_macs=["52:54:00:00:00:01", "52:54:00:00:00:02"])
