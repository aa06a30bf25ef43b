#!/bin/bash
# make demo: inspection, then provisioning, of server1 of the running lab (make lab), ending with the
# SSH command into the installed OS.
#   lab/demo.sh <lab.json>
set -euo pipefail
lab=$1
ns=$(jq -r .namespace "$lab")
inventory=$(jq -r .inventory "$lab")
key=$(jq -r .sshKey "$lab")
cd "$(dirname "$0")/../orchestrator"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== inspect.yml: server1 boots the ephemeral OS from virtual CD, checks in, is inventoried"
ip netns exec "$ns" ansible-playbook -i "$inventory" inspect.yml --limit server1
echo "== inventory: $(jq -r .stateDir "$lab")/inspections/server1.json"
jq -c '{macs: [.nics[].mac], disks: [.disks[] | select(.type == "disk") | {serial, wwn}]}' "$(jq -r .stateDir "$lab")/inspections/server1.json"

echo "== provision.yml: server1 boots by UEFI HTTP Boot, gets the target OS on its disk, reboots into it"
ip netns exec "$ns" ansible-playbook -i "$inventory" provision.yml --limit server1 -e boot_method=uefi-http | tee "$log"
address=$(sed -n 's/.*"msg": "ssh -i [^ ]* root@\([0-9.]*\)".*/\1/p' "$log" | tail -n 1)
echo
echo "The installed OS of server1 answers at $address:"
echo "  ip netns exec $ns ssh -i $key root@$address"
