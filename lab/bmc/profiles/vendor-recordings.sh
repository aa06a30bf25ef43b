#!/bin/bash
# Copies the resources the lab's BMC profiles serve from the Redfish-Mockup-Creator recordings
# (NVIDIA/libredfish tests/mockups, MIT licence) into lab/bmc/profiles/recordings/.
#   lab/bmc/profiles/vendor-recordings.sh <recordings directory>
# Only what the profiles use is copied; a new resource is a new line below.
set -euo pipefail
src=${1:?usage: vendor-recordings.sh <recordings directory>}
dst=$(dirname "$0")/recordings
take() { # vendor, then resource paths under redfish/v1
  local vendor=$1; shift
  for path in "$@"; do
    local from="$src/$vendor/redfish/v1/$path/index.json"
    [ -e "$from" ] || { echo "missing: $from" >&2; exit 1; }
    mkdir -p "$dst/$vendor/redfish/v1/$path"
    cp "$from" "$dst/$vendor/redfish/v1/$path/index.json"
  done
}
rm -rf "$dst"
mkdir -p "$dst"
cp "$src/LICENSE" "$dst/LICENSE"

d=Systems/System.Embedded.1 m=Managers/iDRAC.Embedded.1
take dell . Systems $d $d/Bios $d/Bios/Settings $d/VirtualMedia $d/VirtualMedia/1 $d/VirtualMedia/2 \
  $d/SecureBoot $d/SecureBoot/SecureBootDatabases $d/SecureBoot/SecureBootDatabases/db $d/SecureBoot/SecureBootDatabases/db/Certificates \
  Managers $m $m/VirtualMedia $m/VirtualMedia/RemovableDisk $m/VirtualMedia/CD Chassis Chassis/System.Embedded.1

take hpe . Systems Systems/1 Systems/1/Bios Systems/1/Bios/settings Systems/1/SecureBoot Managers Managers/1 Managers/1/VirtualMedia \
  Managers/1/VirtualMedia/1 Managers/1/VirtualMedia/2 Chassis Chassis/1

slots="EXT1 EXT2 EXT3 EXT4 Remote1 Remote2 Remote3 Remote4 RDOC1 RDOC2"
take lenovo . Systems Systems/1 Systems/1/SecureBoot Systems/1/Pending Systems/1/ResetActionInfo Systems/1/Bios Systems/1/VirtualMedia \
  $(for s in $slots; do echo Systems/1/VirtualMedia/$s; done) Managers Managers/1 Managers/1/VirtualMedia \
  $(for s in $slots; do echo Managers/1/VirtualMedia/$s; done) Chassis Chassis/1
echo "copied $(find "$dst" -name index.json | wc -l) resources into $dst"
