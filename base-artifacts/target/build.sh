#!/bin/bash
# Builds the target OS disk image that provisioning writes to a server's disk: Debian bookworm with
# systemd, cloud-init (NoCloud only) and sshd on a GPT disk with an EFI system partition holding a
# unified kernel image at the removable-media path, and an ext4 root partition typed "Linux root
# (x86-64)" that the initramfs finds by that type (no root= on the command line).
#
# usage: base-artifacts/target/build.sh amd64 <outdir> <workdir>
#
# Produces <outdir>/target-debian12-amd64.qcow2 (compressed qcow2). <workdir>/target-amd64/ keeps the
# root tree, the partition images, the UKI and contents.txt (packages and image facts).
# No loop devices and no mounts: sfdisk writes the table into a file, mtools fills the ESP,
# mkfs.ext4 -d fills the root.
#
# Environment:
#   TARGET_MIRROR, TARGET_SECURITY_MIRROR  Debian mirror URIs (default: the host's apt sources)
#   TARGET_ROOT_FREE_MIB                   free space to leave in the root filesystem (default 300)
#   SOURCE_DATE_EPOCH                      timestamp of everything in the image (default below)
#   TARGET_SECURE_BOOT_KEY, _CERT          sign the UKI with this key (PEM) for Secure Boot; the
#                                          certificate is copied beside the image as
#                                          target-debian12-<arch>.secure-boot.pem (default: unsigned)
set -euo pipefail

usage() { echo "usage: $0 amd64 <outdir> <workdir>" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1
# The partition type, the stub and the console are x86-64 ones; arm64 would need its own.
case $arch in amd64) ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || { echo "target: must run as root (mmdebstrap --mode=root)" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2" "$3"
outdir=$(cd "$2" && pwd)
workdir=$(cd "$3" && pwd)
stage=$workdir/target-$arch
root=$stage/root
suite=bookworm
image=$outdir/target-debian12-$arch.qcow2

# Same inputs (package set, these files) give the same image bytes: every timestamp is this one
# and every identifier below is fixed. Identifiers are the same on every server written from the
# image; cloud-init and systemd give each server its own machine-id and SSH host keys at first boot.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1704067200}   # 2024-01-01T00:00:00Z
disk_guid=1B758E53-BB7E-4845-BB27-484F45D3E480
esp_part_guid=93275854-B160-4DF0-AD75-403B8711BD77
root_part_guid=04D246C7-C964-4946-B88B-74E75ECB3211
root_fs_uuid=0845bf59-e650-4be8-b89b-9c75007dfd47
root_hash_seed=64bc4f52-361c-40f7-997e-6b348477568d
esp_volume_id=69E7C13C
esp_type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
root_type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709   # Discoverable Partitions: root, x86-64
esp_mib=128
root_free_mib=${TARGET_ROOT_FREE_MIB:-300}
# console=tty0 last makes the screen /dev/console; the serial port gets kernel messages and a getty.
cmdline="console=ttyS0,115200 console=tty0 rw"

log() { echo "target[$arch]: $*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "error: command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
started=$(date +%s)

# --- mirror: the host's own apt sources are the only reachable ones -----------------------------

# shellcheck source=../lib/apt-sources.sh
. "$here/../lib/apt-sources.sh"
mirror=${TARGET_MIRROR:-$(host_mirror "$suite")}
security=${TARGET_SECURITY_MIRROR:-$(host_mirror "$suite-security")}
[ -n "$mirror" ] || die "no '$suite' deb source in the host's apt configuration (set TARGET_MIRROR)"
[ -n "$security" ] || die "no '$suite-security' deb source in the host's apt configuration (set TARGET_SECURITY_MIRROR)"
log "mirror $mirror, security $security"

# --- root filesystem ------------------------------------------------------------------------------

# A previous run that died inside mmdebstrap may have left mounts below the stage: never rm across them.
if awk -v p="$stage/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "mounts remain below $stage; unmount them first"
fi
rm -rf "$stage"
mkdir -p "$stage"

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.list" | tr -s '[:space:]' ',' | sed 's/,$//')

# Documentation, translations, firmware and kernel modules no server needs (sound, video capture,
# wireless, Bluetooth, desktop GPUs, staging) are never unpacked. dpkg still lists them as part of
# their package (`dpkg --verify` reports them missing).
kmods=/lib/modules/*/kernel   # the path as the kernel package lists it
dpkg_excludes=(
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/i18n/*'
    --dpkgopt='path-exclude=/usr/share/lintian/*'
    --dpkgopt='path-exclude=/usr/share/bash-completion/*'
    --dpkgopt='path-exclude=/usr/share/zsh/*'
    --dpkgopt='path-exclude=/usr/lib/firmware/*'
    --dpkgopt="path-exclude=$kmods/sound/*"
    --dpkgopt="path-exclude=$kmods/drivers/media/*"
    --dpkgopt="path-exclude=$kmods/drivers/net/wireless/*"
    --dpkgopt="path-exclude=$kmods/net/wireless/*"
    --dpkgopt="path-exclude=$kmods/net/mac80211/*"
    --dpkgopt="path-exclude=$kmods/net/bluetooth/*"
    --dpkgopt="path-exclude=$kmods/drivers/bluetooth/*"
    --dpkgopt="path-exclude=$kmods/drivers/staging/*"
    --dpkgopt="path-exclude=$kmods/drivers/comedi/*"
    --dpkgopt="path-exclude=$kmods/drivers/isdn/*"
    --dpkgopt="path-exclude=$kmods/drivers/iio/*"
    --dpkgopt="path-exclude=$kmods/drivers/gpu/drm/amd/*"
    --dpkgopt="path-exclude=$kmods/drivers/gpu/drm/i915/*"
    --dpkgopt="path-exclude=$kmods/drivers/gpu/drm/nouveau/*"
    --dpkgopt="path-exclude=$kmods/drivers/gpu/drm/radeon/*"
)

# The dracut configuration must be in place before the kernel's postinst builds the initramfs;
# no /vmlinuz and /initrd.img symlinks in /.
essential_hook="mkdir -p \"\$1/etc/dracut.conf.d\" && cp '$here/rootfs/etc/dracut.conf.d/10-target.conf' \"\$1/etc/dracut.conf.d/\" && echo 'do_symlinks = no' > \"\$1/etc/kernel-img.conf\""

log "mmdebstrap ($(echo "$packages" | tr ',' ' ' | wc -w) packages requested)"
mmdebstrap \
    --mode=root --variant=minbase --architectures="$arch" \
    --include="$packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Languages "none"' \
    "${dpkg_excludes[@]}" \
    --essential-hook="$essential_hook" \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package} \${Version}\n' > '$stage/packages.txt'" \
    "$suite" "$root" \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb $security $suite-security main"
log "mmdebstrap done after $(( $(date +%s) - started )) s"

kernels=("$root"/boot/vmlinuz-*)
[ ${#kernels[@]} -eq 1 ] && [ -f "${kernels[0]}" ] || die "expected exactly one kernel in $root/boot"
kver=${kernels[0]##*/vmlinuz-}
initrd=$root/boot/initrd.img-$kver
[ -f "$initrd" ] || die "dracut did not build $initrd"
log "kernel $kver, initramfs $(du -h "$initrd" | cut -f1)"

# Fixes to packaged files, as patches relative to the root (shared with the ephemeral OS). A patch
# that no longer applies (the package changed) fails the build rather than shipping an unfixed image.
for p in "$here"/patches/*.patch; do
    [ -e "$p" ] || continue
    patch -d "$root" -p1 --forward --no-backup-if-mismatch -r - --quiet < "$p" || die "patch $(basename "$p") does not apply"
    sed -n 's|^+++ b/\(.*\)\.py\([[:space:]].*\)\{0,1\}$|\1|p' "$p" | while read -r py; do
        rm -f "$root/$(dirname "$py")/__pycache__/$(basename "$py")".*.pyc
    done
    log "applied $(basename "$p")"
done

# --- configuration --------------------------------------------------------------------------------

# Files of this directory's rootfs/ tree land as they are, owned by root.
tar -C "$here/rootfs" --owner=0 --group=0 -cf - . | tar -C "$root" -xf -

# cloud-init only warns at boot about a configuration its schema rejects: reject it here instead.
{ echo '#cloud-config'; cat "$root/etc/cloud/cloud.cfg" "$root"/etc/cloud/cloud.cfg.d/*.cfg; } > "$root/tmp/cloud.cfg.check"
chroot "$root" cloud-init schema --config-file /tmp/cloud.cfg.check >/dev/null ||
    die "cloud-init rejects /etc/cloud/cloud.cfg (see above)"
rm -f "$root/tmp/cloud.cfg.check"

# No identity in the image: systemd writes a machine-id at first boot (an empty file marks the
# first boot), cloud-init or ssh-hostkeys generate the SSH host keys, cloud-init sets the hostname.
rm -f "$root/etc/ssh/ssh_host_"*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
echo localhost > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# The image's apt sources are the public ones, whatever mirror built it.
cat > "$root/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian $suite main
deb http://deb.debian.org/debian $suite-updates main
deb http://security.debian.org/debian-security $suite-security main
EOF
# The root is found by its partition type and mounted read-write from the command line; the ESP
# is not mounted (the UKI on it is written at build time).
cat > "$root/etc/fstab" <<'EOF'
# <file system> <mount point> <type> <options> <dump> <pass>
# / is the partition of type "Linux root (x86-64)" on the boot disk (systemd-gpt-auto-generator).
EOF

systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service ssh-hostkeys.service
# First-boot prompts would block the console of a server nobody watches.
systemctl --root="$root" mask systemd-firstboot.service

# Leftovers of the package installation; the initramfs lives in the UKI only.
cp "$initrd" "$stage/initrd.img"
rm -f "$root"/boot/initrd.img-*
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/tmp/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache
# Log files go, their directories stay (/var/log/journal makes the journal persistent).
find "$root/var/log" -type f -delete
# mkfs.ext4 -d copies each file's times: clamp everything the build touched.
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# --- unified kernel image (systemd-stub of the image's own systemd-boot-efi) ----------------------

stub=$root/usr/lib/systemd/boot/efi/linuxx64.efi.stub
[ -f "$stub" ] || die "no $stub"
uki=$stage/BOOTX64.EFI
printf '%s' "$cmdline" > "$stage/cmdline.txt"
cp "$root/usr/lib/os-release" "$stage/os-release"

# Each section goes after the previous one at the stub's section alignment; .linux last (the
# kernel may decompress past its end).
align=$((16#$(objdump -p "$stub" | awk '$1 == "SectionAlignment" { print $2 }')))
next=0
while read -r size vma; do
    end=$((16#$vma + 16#$size))
    [ "$end" -gt "$next" ] && next=$end
done < <(objdump -h "$stub" | awk '$1 ~ /^[0-9]+$/ { print $3, $4 }')
objcopy_args=()
for sec in .osrel:"$stage/os-release" .cmdline:"$stage/cmdline.txt" .initrd:"$stage/initrd.img" .linux:"${kernels[0]}"; do
    name=${sec%%:*} file=${sec#*:}
    next=$(( (next + align - 1) / align * align ))
    flags=data,readonly
    [ "$name" = .linux ] && flags=code,readonly
    objcopy_args+=(--add-section "$name=$file" --change-section-vma "$name=$(printf '0x%x' "$next")"
        --set-section-flags "$name=$flags")
    next=$((next + $(stat -c %s "$file")))
done
objcopy "${objcopy_args[@]}" "$stub" "$uki"
# objcopy (binutils 2.40) stamps the PE header with the current time: use SOURCE_DATE_EPOCH and
# recompute the header checksum (16-bit one's-complement sum of the file plus its length).
python3 - "$uki" "$SOURCE_DATE_EPOCH" <<'PY'
import struct, sys
from array import array
path, stamp = sys.argv[1], int(sys.argv[2])
data = bytearray(open(path, 'rb').read())
pe = struct.unpack_from('<I', data, 0x3c)[0]
assert data[pe:pe + 4] == b'PE\0\0', 'not a PE file'
checksum = pe + 24 + 64
struct.pack_into('<I', data, pe + 8, stamp)
struct.pack_into('<I', data, checksum, 0)
total = sum(array('H', bytes(data[:len(data) & ~1]))) + (data[-1] if len(data) & 1 else 0)
while total >> 16:
    total = (total & 0xffff) + (total >> 16)
struct.pack_into('<I', data, checksum, total + len(data))
open(path, 'wb').write(data)
PY
log "UKI $(du -h "$uki" | cut -f1) (cmdline: $cmdline)"

# Secure Boot: firmware whose db holds the certificate boots the installed OS with Secure Boot on.
sb_cert_out=$outdir/target-debian12-$arch.secure-boot.pem
if [ -n "${TARGET_SECURE_BOOT_KEY:-}${TARGET_SECURE_BOOT_CERT:-}" ]; then
    [ -r "${TARGET_SECURE_BOOT_KEY:-}" ] && [ -r "${TARGET_SECURE_BOOT_CERT:-}" ] ||
        die "TARGET_SECURE_BOOT_KEY and TARGET_SECURE_BOOT_CERT must both name readable PEM files"
    sbsign --key "$TARGET_SECURE_BOOT_KEY" --cert "$TARGET_SECURE_BOOT_CERT" --output "$uki.signed" "$uki" 2>/dev/null ||
        die "sbsign could not sign the UKI with TARGET_SECURE_BOOT_KEY"
    mv "$uki.signed" "$uki"
    sbverify --cert "$TARGET_SECURE_BOOT_CERT" "$uki" >/dev/null || die "the signed UKI does not verify"
    install -m 0644 "$TARGET_SECURE_BOOT_CERT" "$sb_cert_out"
    log "UKI signed for Secure Boot ($(openssl x509 -noout -subject -in "$TARGET_SECURE_BOOT_CERT"))"
else
    rm -f "$sb_cert_out"
fi

# --- partitions -----------------------------------------------------------------------------------

# ESP: the UKI at the removable-media path, so firmware with no boot entries boots it. No volume
# label: mkfs.vfat stamps its directory entry with the current time. mtools uses SOURCE_DATE_EPOCH.
esp=$stage/esp.img
rm -f "$esp"
mkfs.vfat -C -F 32 -i "$esp_volume_id" "$esp" $((esp_mib * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT
touch -d "@$SOURCE_DATE_EPOCH" "$uki"
mcopy -m -i "$esp" "$uki" ::/EFI/BOOT/BOOTX64.EFI

# Root: room for the content (regular files rounded to 4 KiB blocks, 4 KiB per other entry) plus
# 10 % and 64 MiB for ext4 metadata and the journal, plus the requested free space.
used_kib=$(find "$root" -xdev \( -type f -printf '%s\n' -o -printf '4096\n' \) |
    awk '{ k += int(($1 + 4095) / 4096) * 4 } END { print k }')
root_mib=$(( (used_kib * 110 / 100 / 1024 + 64 + root_free_mib + 63) / 64 * 64 ))
rootimg=$stage/root.img
rm -f "$rootimg"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -t ext4 -b 4096 -L root -U "$root_fs_uuid" \
    -E "hash_seed=$root_hash_seed,root_owner=0:0" -d "$root" "$rootimg" "${root_mib}M" >/dev/null
# mkfs.ext4 -d also copies atime and ctime, which reading and touching the tree just changed.
stamp=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)
(cd "$root" && find . -mindepth 1) | LC_ALL=C sort | sed -e 's|^\.||' -e 's|"|\\"|g' |
    awk -v t="$stamp" '{ printf "sif \"%s\" ctime %s\nsif \"%s\" atime %s\n", $0, t, $0, t }' > "$stage/debugfs.cmds"
printf 'sif / ctime %s\nsif / atime %s\nssv wtime %s\n' "$stamp" "$stamp" "$stamp" >> "$stage/debugfs.cmds"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$stage/debugfs.cmds" "$rootimg" >/dev/null 2>"$stage/debugfs.err"
if grep -v '^debugfs [0-9]' "$stage/debugfs.err" | grep -q .; then
    die "debugfs: $(grep -v '^debugfs [0-9]' "$stage/debugfs.err" | head -n 3)"
fi
e2fsck -fn "$rootimg" >/dev/null 2>&1 || die "e2fsck finds errors in $rootimg"
free_mib=$(dumpe2fs -h "$rootimg" 2>/dev/null | awk -F: '
    $1 == "Free blocks" { f = $2 } $1 == "Reserved block count" { r = $2 } $1 == "Block size" { b = $2 }
    END { print int((f - r) * b / 1048576) }')
log "root filesystem ${root_mib} MiB, ${free_mib} MiB available (without the reserved blocks)"

# --- disk -----------------------------------------------------------------------------------------

esp_start=2048
esp_sectors=$((esp_mib * 2048))
root_start=$((esp_start + esp_sectors))
root_sectors=$((root_mib * 2048))
disk=$stage/disk.raw
rm -f "$disk"
# One MiB after the root partition for the backup GPT (and alignment).
truncate -s $(( (root_start + root_sectors + 2048) * 512 )) "$disk"
sfdisk -q --no-reread --no-tell-kernel "$disk" <<EOF
label: gpt
label-id: $disk_guid
unit: sectors
first-lba: 2048
sector-size: 512

start=$esp_start, size=$esp_sectors, type=$esp_type, uuid=$esp_part_guid, name="ESP"
start=$root_start, size=$root_sectors, type=$root_type, uuid=$root_part_guid, name="root-x86-64"
EOF
starts=$(sfdisk -d "$disk" | sed -n 's/.*start= *\([0-9]*\),.*/\1/p' | tr '\n' ' ')
[ "$starts" = "$esp_start $root_start " ] || die "sfdisk placed the partitions at $starts, not $esp_start $root_start"
dd if="$esp" of="$disk" bs=1M seek=$((esp_start / 2048)) conv=notrunc,sparse status=none
dd if="$rootimg" of="$disk" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none

tmp=$outdir/.target-debian12-$arch.qcow2.tmp
rm -f "$tmp"
qemu-img convert -c -O qcow2 "$disk" "$tmp"
mv "$tmp" "$image"

{
    echo "# target-debian12-$arch.qcow2, kernel $kver, SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"
    echo "# disk $(stat -c %s "$disk") bytes, ESP ${esp_mib} MiB, root ${root_mib} MiB (${free_mib} MiB free)"
    echo "# UKI $(stat -c %s "$uki") bytes, initramfs $(stat -c %s "$stage/initrd.img") bytes"
    echo "## packages"; cat "$stage/packages.txt"
} > "$stage/contents.txt"
log "$image: $(du -h "$image" | cut -f1) (virtual $(( $(stat -c %s "$disk") / 1048576 )) MiB) in $(( $(date +%s) - started )) s"
log "sha256 $(sha256sum "$image" | cut -d' ' -f1)"
