# The IPAM filter against the design's own expression, run unchanged through Debian's Ansible and
# ansible.utils (known-answer vectors made at test time), and its edge cases.
import json
import os
import subprocess
import tempfile

import pytest

from ansible_collections.uki_on_demand.baremetal.plugins.module_utils.ipam import (
    IpamError, check_address, ipam_address, shared_with)

# The seed's snippet ("Deterministic IPAM offset calculation"), word for word.
DESIGN = """
    _ipam_offset: >-
      {{ ((bmc_host ~ '/' ~ bmc_resource_id) | hash('sha256'))[:8]
         | int(base=16)
         % (server_subnet | ansible.utils.ipaddr('size') - 3) + 2 }}
    server_host: >-
      {{ server_subnet | ansible.utils.ipaddr(_ipam_offset | int)
         | ansible.utils.ipaddr('address') }}
"""

CASES = [(h, r, s) for h in ("10.1.2.3", "bmc-b.example.net", "198.51.100.12:8443", "172.16.9.9", "192.0.2.201")
         for r in ("System.Embedded.1", "1", "Self", "437XR1138R2")
         for s in ("192.0.2.0/24", "10.20.0.0/16", "198.51.100.16/28", "172.16.32.0/20", "198.51.100.128/25",
                   "203.0.113.4/30", "10.0.10.7/24")]


@pytest.fixture(scope="module")
def design_answers():
    """server_host of the design's expression for every case, computed by ansible-playbook."""
    with tempfile.TemporaryDirectory() as tmp:
        play = os.path.join(tmp, "ipam.yml")
        with open(play, "w") as f:
            f.write("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "  - name: the design's address\n    ansible.builtin.debug: {msg: \"{{ server_host }}\"}\n"
                    "    loop: %s\n    vars:\n      bmc_host: \"{{ item[0] }}\"\n      bmc_resource_id: \"{{ item[1] }}\"\n"
                    "      server_subnet: \"{{ item[2] }}\"\n" % json.dumps([list(c) for c in CASES]))
            f.write("\n".join("  " + line for line in DESIGN.strip("\n").split("\n")) + "\n")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_CALLBACKS_ENABLED="", ANSIBLE_CONFIG="")
        done = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", play], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        results = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["results"]
        return [r["msg"] for r in results]


def test_the_filter_gives_the_design_expressions_addresses(design_answers):
    assert len(design_answers) == len(CASES) == 140
    mine = [ipam_address(h, r, s) for h, r, s in CASES]
    assert mine == design_answers


def test_a_known_answer_checked_by_hand():
    assert ipam_address("10.1.2.3", "System.Embedded.1", "192.0.2.0/24") == "192.0.2.46"


def test_a_non_canonical_cidr_counts_from_the_network_address(design_answers):
    for (host, rid, subnet), answer in zip(CASES, design_answers):
        if subnet == "10.0.10.7/24":
            assert ipam_address(host, rid, subnet) == ipam_address(host, rid, "10.0.10.0/24") == answer


def test_a_slash_30_has_one_address_to_give():
    assert {ipam_address("bmc%d" % i, "1", "203.0.113.4/30") for i in range(20)} == {"203.0.113.6"}


@pytest.mark.parametrize("subnet, message", [
    ("203.0.113.4/31", "is a /31: the IPAM needs at least a /30"),
    ("203.0.113.4/32", "is a /32: the IPAM needs at least a /30"),
    ("2001:db8::/64", "is IPv6: the IPAM of this design hands out IPv4 addresses only"),
    ("not-a-subnet", "is not a CIDR"),
])
def test_subnets_without_an_address_are_refused(subnet, message):
    with pytest.raises(IpamError, match=message):
        ipam_address("10.1.2.3", "1", subnet)


def test_ipam_needs_the_system_id():
    with pytest.raises(IpamError, match="set server_host, or bmc_resource_id"):
        ipam_address("10.1.2.3", "", "192.0.2.0/24")


@pytest.mark.parametrize("address", ["192.0.2.0", "192.0.2.255", "192.0.2.1", "10.9.9.9", "nonsense"])
def test_unusable_addresses_are_refused(address):
    with pytest.raises(IpamError, match="cannot be used in 192.0.2.0/24|is not an IPv4 address"):
        check_address(address, "192.0.2.0/24", "192.0.2.1")


def test_a_host_address_passes():
    assert check_address("192.0.2.77", "192.0.2.0/24", "192.0.2.1") == "192.0.2.77"


def test_shared_addresses_name_the_other_hosts():
    addresses = {"a": "192.0.2.7", "b": "192.0.2.8", "c": "192.0.2.7", "d": None}
    assert shared_with("a", addresses) == ["c"]
    assert shared_with("b", addresses) == []
    assert shared_with("d", addresses) == []
