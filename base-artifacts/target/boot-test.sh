#!/bin/bash
# Boots the target OS image in QEMU + OVMF (no boot variables: the removable-media path must work)
# with a NoCloud seed and checks it over SSH: root is the GPT-typed partition, hostname and
# instance-id come from the seed, the static address of the network-config is up.
#
# usage: base-artifacts/target/boot-test.sh <image.qcow2> <virtio|nvme|scsi> <cidata|rootseed> [workdir]
#
#   cidata    the seed is a small vfat disk labelled CIDATA (the image stays untouched: snapshot=on)
#   rootseed  the seed is written into /var/lib/cloud/seed/nocloud/ of a copy of the image's root
#             partition (debugfs, no mounts), the way provisioning seeds a written disk; the copy
#             is also grown by 1 GiB to exercise growpart/resizefs
#
# Environment: BOOT_TEST_TIMEOUT (s, default 600), BOOT_TEST_PORT (default 10022).
# Prints "boot-test: ..." lines; exits 0 when every check passes.
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 <image.qcow2> <virtio|nvme|scsi> <cidata|rootseed> [workdir]" >&2; exit 2; }
image=$(realpath "$1") bus=$2 seedmode=$3
work=${4:-$(mktemp -d /tmp/target-boot-test.XXXXXX)}
mkdir -p "$work"
timeout_s=${BOOT_TEST_TIMEOUT:-600}
port=${BOOT_TEST_PORT:-10022}
mac=52:54:00:12:34:56
iid=iid-boot-test-$bus-$seedmode
host=target-$bus-$seedmode
root_type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709

log() { echo "boot-test: $*"; }
fail() { log "FAIL: $*"; exit 1; }

# --- seed ------------------------------------------------------------------------------------------

rm -f "$work/id" "$work/id.pub"
ssh-keygen -q -t ed25519 -N '' -C boot-test -f "$work/id"
seed=$work/seed
mkdir -p "$seed"
printf 'instance-id: %s\nlocal-hostname: %s\n' "$iid" "$host" > "$seed/meta-data"
printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat "$work/id.pub")" > "$seed/user-data"
# With QEMU user networking the guest must be 10.0.2.15 for hostfwd to reach it.
cat > "$seed/network-config" <<EOF
version: 2
ethernets:
  nic0:
    match:
      macaddress: "$mac"
    addresses: [10.0.2.15/24]
    routes:
      - to: default
        via: 10.0.2.2
    nameservers:
      addresses: [10.0.2.3]
EOF

disk_opts=(-drive "if=none,id=d0,format=qcow2,file=$image,snapshot=on")
extra=()
case $seedmode in
    cidata)
        rm -f "$work/cidata.img"
        mkfs.vfat -C -n CIDATA "$work/cidata.img" 2048 >/dev/null
        MTOOLS_SKIP_CHECK=1 mcopy -i "$work/cidata.img" "$seed/meta-data" "$seed/user-data" "$seed/network-config" ::/
        extra=(-drive "if=virtio,format=raw,file=$work/cidata.img,readonly=on")
        ;;
    rootseed)
        raw=$work/disk.raw
        qemu-img convert -O raw "$image" "$raw"
        start=$(sfdisk -d "$raw" | awk -v t="${root_type^^}" 'toupper($0) ~ "TYPE=" t { sub(/.*start= */, ""); sub(/,.*/, ""); print }')
        [ -n "$start" ] || fail "no root partition in $image"
        {
            for d in /var/lib/cloud /var/lib/cloud/seed /var/lib/cloud/seed/nocloud; do echo "mkdir $d"; done
            for f in meta-data user-data network-config; do
                echo "write $seed/$f /var/lib/cloud/seed/nocloud/$f"
                echo "sif /var/lib/cloud/seed/nocloud/$f mode 0100600"
                echo "sif /var/lib/cloud/seed/nocloud/$f uid 0"
                echo "sif /var/lib/cloud/seed/nocloud/$f gid 0"
            done
        } > "$work/seed.debugfs"
        debugfs -w -f "$work/seed.debugfs" "$raw?offset=$((start * 512))" >/dev/null 2>"$work/debugfs.err" || true
        debugfs -R 'ls -l /var/lib/cloud/seed/nocloud' "$raw?offset=$((start * 512))" 2>/dev/null | grep -q network-config ||
            fail "writing the seed into the root partition: $(cat "$work/debugfs.err")"
        # A larger disk, as on a real server: growpart moves the backup GPT and grows the root.
        truncate -s +1G "$raw"
        disk_opts=(-drive "if=none,id=d0,format=raw,file=$raw")
        ;;
    *) fail "unknown seed mode $seedmode" ;;
esac

case $bus in
    virtio) disk_opts+=(-device virtio-blk-pci,drive=d0) ;;
    nvme) disk_opts+=(-device nvme,drive=d0,serial=NVME0001) ;;
    scsi) disk_opts+=(-device virtio-scsi-pci,id=scsi0 -device scsi-hd,drive=d0,bus=scsi0.0) ;;
    *) fail "unknown bus $bus" ;;
esac

# --- boot ------------------------------------------------------------------------------------------

cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
serial=$work/serial.log
: > "$serial"
t0=$(date +%s.%N)
qemu-system-x86_64 -machine q35,accel=tcg -smp 2 -m 1024 -display none -no-reboot \
    -serial "file:$serial" -monitor none \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,file=$work/vars.fd" \
    "${disk_opts[@]}" "${extra[@]}" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device "virtio-net-pci,netdev=n0,mac=$mac" &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true' EXIT
elapsed() { awk -v now="$(date +%s.%N)" -v t0="$t0" 'BEGIN { printf "%.1f", now - t0 }'; }

ssh_=(ssh -q -i "$work/id" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o ConnectTimeout=5 -o BatchMode=yes root@127.0.0.1)
deadline=$(( $(date +%s) + timeout_s ))
until "${ssh_[@]}" true 2>/dev/null; do
    kill -0 "$qemu" 2>/dev/null || fail "QEMU exited before SSH answered (serial: $serial)"
    [ "$(date +%s)" -lt "$deadline" ] || fail "no SSH after $timeout_s s (serial: $serial)"
    sleep 2
done
log "$bus/$seedmode: SSH by key after $(elapsed) s"

# --- checks ----------------------------------------------------------------------------------------

# SSH answers before cloud-init's final stage and the rest of the boot are done: wait for both.
"${ssh_[@]}" "cloud-init status --wait >/dev/null; systemctl is-system-running --wait >/dev/null" || true
log "$bus/$seedmode: boot finished after $(elapsed) s"
out=$("${ssh_[@]}" "
    echo hostname=\$(hostname)
    echo iid=\$(cat /var/lib/cloud/data/instance-id)
    src=\$(findmnt -n -o SOURCE /); echo root=\$src
    echo parttype=\$(lsblk -n -o PARTTYPE \$src)
    echo rootsize=\$(df -m --output=size / | tail -n 1 | tr -d ' ')
    echo addr=\$(ip -4 -o addr show | awk '\$2 != \"lo\" { print \$4 }' | tr '\n' ' ')
    echo cmdline=\$(cat /proc/cmdline)
    echo machineid=\$(cat /etc/machine-id)
    echo hostkeys=\$(ls /etc/ssh/ | grep -c '^ssh_host_.*_key\$') \$(ls /etc/ssh | grep '^ssh_host_.*_key\$' | tr '\n' ' ')
    echo datasource=\$(python3 -c 'import json; print(json.load(open(\"/run/cloud-init/status.json\"))[\"v1\"][\"datasource\"])')
    echo ci=\$(cloud-init status --long 2>/dev/null | sed -n 's/^status: //p')
    echo failed=\$(systemctl --failed --no-legend --plain | awk '{print \$1}' | tr '\n' ' ')
    echo boot=\$(systemd-analyze 2>/dev/null | head -n 1)
    echo slowest=\$(systemd-analyze blame 2>/dev/null | head -n 5 | tr -s ' ' | tr '\n' ',')
")
echo "$out" | sed 's/^/boot-test:   /'
get() { echo "$out" | sed -n "s/^$1=//p"; }
[ "$(get hostname)" = "$host" ] || fail "hostname $(get hostname), expected $host"
[ "$(get iid)" = "$iid" ] || fail "instance-id $(get iid), expected $iid"
[ "$(get parttype)" = "$root_type" ] || fail "root $(get root) has type $(get parttype)"
case " $(get addr) " in *" 10.0.2.15/24 "*) ;; *) fail "no 10.0.2.15/24 (addresses: $(get addr))" ;; esac
case $(get cmdline) in *root=*) fail "root= on the command line" ;; esac
[ -n "$(get machineid)" ] || fail "no machine-id"
[ "$(get ci)" = done ] || fail "cloud-init status $(get ci)"
[ -z "$(get failed | tr -d ' ')" ] || fail "failed units: $(get failed)"
if [ "$seedmode" = rootseed ]; then
    [ "$(get rootsize)" -gt 1024 ] || fail "root not grown ($(get rootsize) MiB)"
fi
"${ssh_[@]}" poweroff >/dev/null 2>&1 || true
wait "$qemu" 2>/dev/null || true
trap - EXIT
log "$bus/$seedmode: PASS ($(elapsed) s total)"
