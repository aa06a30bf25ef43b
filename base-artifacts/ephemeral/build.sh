#!/bin/bash
# Builds the ephemeral provisioning OS: a Debian bookworm root filesystem (mmdebstrap) with systemd
# as /init, packed as a zstd-compressed newc cpio that the kernel unpacks into RAM and runs as is.
#
# usage: base-artifacts/ephemeral/build.sh <amd64|arm64> <outdir> <workdir>
#
# Produces <outdir>/initramfs-<arch>.img (and, through fetch-kernel.sh, <outdir>/vmlinuz-<arch>).
# <workdir>/ephemeral-<arch>/ keeps the unpacked root, the module and firmware staging trees and
# contents.txt (the package, module and firmware lists of the image).
#
# Environment:
#   EPHEMERAL_MIRROR, EPHEMERAL_SECURITY_MIRROR  Debian mirror URIs (default: the host's apt sources)
#   EPHEMERAL_ZSTD_LEVEL                         compression level (default 19)
set -euo pipefail

usage() { echo "usage: $0 <amd64|arm64> <outdir> <workdir>" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1
case $arch in amd64|arm64) ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || { echo "ephemeral: must run as root (mmdebstrap --mode=root)" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2" "$3"
outdir=$(cd "$2" && pwd)
workdir=$(cd "$3" && pwd)
stage=$workdir/ephemeral-$arch
root=$stage/root
zstd_level=${EPHEMERAL_ZSTD_LEVEL:-19}
suite=bookworm
firmware_packages="firmware-misc-nonfree firmware-qlogic firmware-bnx2x firmware-bnx2"
case $arch in
    amd64) console=ttyS0 ;;
    arm64) console=ttyAMA0 ;;
esac

log() { echo "ephemeral[$arch]: $*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "error: command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
started=$(date +%s)

# --- mirror: the host's own apt sources are the only reachable ones -----------------------------

# host_mirror SUITE: the host's own deb source for that suite.
# shellcheck source=../lib/apt-sources.sh
. "$here/../lib/apt-sources.sh"

mirror=${EPHEMERAL_MIRROR:-$(host_mirror "$suite")}
security=${EPHEMERAL_SECURITY_MIRROR:-$(host_mirror "$suite-security")}
[ -n "$mirror" ] || die "no '$suite' deb source in the host's apt configuration (set EPHEMERAL_MIRROR)"
[ -n "$security" ] || die "no '$suite-security' deb source in the host's apt configuration (set EPHEMERAL_SECURITY_MIRROR)"
components="main non-free-firmware"
log "mirror $mirror, security $security"

# --- foreign architecture: maintainer scripts run through qemu-user (binfmt_misc) -----------------

qemu_arch=$(case $arch in amd64) echo x86_64 ;; arm64) echo aarch64 ;; esac)
if [ "$arch" != "$(dpkg --print-architecture)" ] && [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qemu_arch" ]; then
    conf=/usr/lib/binfmt.d/qemu-$qemu_arch.conf
    [ -f "$conf" ] || die "no $conf: install qemu-user-static to build for $arch"
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
            die "cannot mount binfmt_misc: building for $arch needs it (a privileged container or the host)"
    fi
    # The F flag opens the interpreter now, so it also works inside the chroot.
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$conf" > /proc/sys/fs/binfmt_misc/register ||
        die "cannot register qemu-$qemu_arch with binfmt_misc"
    log "registered qemu-$qemu_arch with binfmt_misc"
fi

# --- kernel: modules come from the same package as <outdir>/vmlinuz-<arch> ------------------------

"$here/../fetch-kernel.sh" "$arch" "$outdir" "$workdir" >/dev/null
# shellcheck disable=SC1090
. "$workdir/kernel-$arch.env"
kver=$KERNEL_VERSION
[ -d "$MODULES_DIR" ] || die "modules tree $MODULES_DIR missing"
log "kernel $kver"

# --- root filesystem ------------------------------------------------------------------------------

# A previous run that died inside mmdebstrap may have left mounts below the stage: never rm across them.
if awk -v p="$stage/" 'index($2, p) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "mounts remain below $stage; unmount them first"
fi
rm -rf "$stage"
mkdir -p "$stage/firmware-debs" "$stage/firmware" "$stage/qemu-debs" "$stage/qemu-block-extra"
chmod 0777 "$stage/firmware-debs" "$stage/qemu-debs"   # apt downloads as _apt

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.list" | tr -s '[:space:]' ',' | sed 's/,$//')

# Documentation, translations and xfs_scrub (the only user of the 36 MB libicu) never reach the image.
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
    --dpkgopt='path-exclude=/usr/sbin/xfs_scrub*'
    --dpkgopt='path-exclude=/usr/lib/systemd/system/xfs_scrub*'
    --dpkgopt='path-exclude=/usr/lib/*/libicu*'
    --dpkgopt='path-exclude=/usr/share/icu/*'
)

log "mmdebstrap ($(echo "$packages" | tr ',' ' ' | wc -w) packages requested)"
mmdebstrap \
    --mode=root --variant=minbase --architectures="$arch" \
    --include="$packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Languages "none"' \
    "${dpkg_excludes[@]}" \
    --customize-hook="cd '$stage/firmware-debs' && APT_CONFIG=\"\$MMDEBSTRAP_APT_CONFIG\" apt-get download -q $firmware_packages" \
    --customize-hook="cd '$stage/qemu-debs' && APT_CONFIG=\"\$MMDEBSTRAP_APT_CONFIG\" apt-get download -q qemu-block-extra=\$(chroot \"\$1\" dpkg-query -W -f='\${Version}' qemu-utils)" \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Package} \${Version}\n' > '$stage/packages.txt'" \
    "$suite" "$root" \
    "deb $mirror $suite $components" \
    "deb $mirror $suite-updates $components" \
    "deb $security $suite-security $components"

# Fixes to packaged files, as patches relative to the root. A patch that no longer applies (the
# package changed) fails the build rather than shipping an unfixed image.
for p in "$here"/patches/*.patch; do
    [ -e "$p" ] || continue
    patch -d "$root" -p1 --forward --no-backup-if-mismatch -r - --quiet < "$p" || die "patch $(basename "$p") does not apply"
    # Bytecode of the unpatched source would only be recompiled at first import: drop it now.
    sed -n 's|^+++ b/\(.*\)\.py\([[:space:]].*\)\{0,1\}$|\1|p' "$p" | while read -r py; do
        rm -f "$root/$(dirname "$py")/__pycache__/$(basename "$py")".*.pyc
    done
    log "applied $(basename "$p")"
done

# QEMU's curl block driver (http/https), so that `qemu-img convert` streams a disk image from a URL
# onto a disk instead of holding a download in the RAM root. Debian ships it in qemu-block-extra,
# whose other drivers pull in Ceph, GlusterFS, iSCSI and NFS libraries: the package is downloaded
# (not installed) and only block-curl.so is copied. It must come from exactly the qemu-utils
# version of the image (QEMU refuses modules of another build); its one library, libcurl-gnutls,
# is libcurl3-gnutls of packages.list.
dpkg-deb -x "$stage"/qemu-debs/qemu-block-extra_*.deb "$stage/qemu-block-extra"
for so in "$stage"/qemu-block-extra/usr/lib/*/qemu/block-curl.so; do
    [ -f "$so" ] || die "no block-curl.so in qemu-block-extra"
    rel=${so#"$stage/qemu-block-extra/"}
    install -D -m 0644 "$so" "$root/$rel"
    echo "$rel $(dpkg-deb -W --showformat='${Package} ${Version}' "$stage"/qemu-debs/qemu-block-extra_*.deb)" > "$stage/qemu-modules.txt"
done
chroot "$root" qemu-img --help | grep -q 'Supported formats:.* https\{0,1\} ' ||
    die "qemu-img does not list the http/https drivers after adding block-curl.so"
log "qemu block driver: $(cut -d' ' -f1 "$stage/qemu-modules.txt")"

# --- kernel modules and the firmware they ask for -------------------------------------------------

# depmod writes its index next to the modules: work on a hard-linked copy of the shared tree.
fullmods=$stage/modules-full
mkdir -p "$fullmods/lib/modules"
cp -al "$MODULES_DIR" "$fullmods/lib/modules/$kver" 2>/dev/null || {
    rm -rf "$fullmods/lib/modules/$kver"   # another filesystem: copy instead
    cp -a "$MODULES_DIR" "$fullmods/lib/modules/$kver"
}
depmod -b "$fullmods" "$kver"

: > "$stage/modules.txt"
while read -r name; do
    optional=
    case $name in \?*) optional=1; name=${name#\?} ;; esac
    if ! deps=$(modprobe -d "$fullmods" -S "$kver" --show-depends "$name" 2>/dev/null); then
        [ -n "$optional" ] && { log "module $name: not in this kernel, skipped"; continue; }
        die "module $name not found in $kver"
    fi
    printf '%s\n' "$deps" | awk '$1 == "insmod" { print $2 }' >> "$stage/modules.txt"
done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/modules.list")
sort -u -o "$stage/modules.txt" "$stage/modules.txt"

imgmods=$root/usr/lib/modules/$kver
mkdir -p "$imgmods"
cp "$fullmods/lib/modules/$kver"/modules.{builtin,builtin.modinfo,order} "$imgmods/"
while read -r path; do
    rel=${path#"$fullmods/lib/modules/$kver/"}
    mkdir -p "$imgmods/$(dirname "$rel")"
    cp "$path" "$imgmods/$rel"
done < "$stage/modules.txt"
depmod -b "$root" "$kver"
log "$(wc -l < "$stage/modules.txt") modules ($(du -sh "$imgmods" | cut -f1))"

for deb in "$stage"/firmware-debs/*.deb; do dpkg -x "$deb" "$stage/firmware"; done
fwsrc=$stage/firmware/usr/lib/firmware
[ -d "$fwsrc" ] || fwsrc=$stage/firmware/lib/firmware
: > "$stage/firmware.txt"
while read -r path; do
    for fw in $(modinfo -F firmware "$path"); do
        if [ -e "$fwsrc/$fw" ]; then
            mkdir -p "$root/usr/lib/firmware/$(dirname "$fw")"
            cp -L "$fwsrc/$fw" "$root/usr/lib/firmware/$fw"
            echo "$fw $(basename "$path" .ko)" >> "$stage/firmware.txt"
        else
            echo "$fw $(basename "$path" .ko) (not packaged by Debian)" >> "$stage/firmware.txt"
        fi
    done
done < "$stage/modules.txt"
# Files no module names but a driver needs (firmware.list says why for each one).
while read -r fw; do
    [ -e "$fwsrc/$fw" ] || die "firmware.list: $fw is in none of: $firmware_packages"
    if [ ! -e "$root/usr/lib/firmware/$fw" ]; then
        mkdir -p "$root/usr/lib/firmware/$(dirname "$fw")"
        cp -L "$fwsrc/$fw" "$root/usr/lib/firmware/$fw"
    fi
    echo "$fw (firmware.list)" >> "$stage/firmware.txt"
done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/firmware.list")
log "firmware: $(find "$root/usr/lib/firmware" -type f | wc -l) files ($(du -sh "$root/usr/lib/firmware" | cut -f1))"

# --- configuration --------------------------------------------------------------------------------

# Files of this directory's rootfs/ tree land as they are, owned by root.
tar -C "$here/rootfs" --owner=0 --group=0 -cf - . | tar -C "$root" -xf -

# cloud-init only warns at boot about a configuration its schema rejects: reject it here instead.
{ echo '#cloud-config'; cat "$root/etc/cloud/cloud.cfg" "$root"/etc/cloud/cloud.cfg.d/*.cfg; } > "$root/tmp/cloud.cfg.check"
chroot "$root" cloud-init schema --config-file /tmp/cloud.cfg.check >/dev/null ||
    die "cloud-init rejects /etc/cloud/cloud.cfg (see above)"
rm -f "$root/tmp/cloud.cfg.check"

# systemd runs straight from the unpacked initramfs: no initrd-release (that would make it an
# initrd waiting for switch_root), no machine identity, no SSH host keys shared by every server.
ln -sfn usr/lib/systemd/systemd "$root/init"
rm -f "$root/etc/initrd-release" "$root/etc/ssh/ssh_host_"*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
echo uod-ephemeral > "$root/etc/hostname"
# The root is the kernel's initramfs tmpfs, capped at half the RAM; downloads land there too.
# systemd-remount-fs applies this at boot (there is no swap: the rest stays for processes).
cat > "$root/etc/fstab" <<'FSTAB'
# <file system> <mount point> <type> <options> <dump> <pass>
rootfs / rootfs rw,size=75% 0 0
FSTAB

systemctl --root="$root" enable \
    systemd-networkd.service systemd-resolved.service \
    dhcp-discover.service checkin.service ssh-hostkeys.service \
    "serial-getty@$console.service"
# Measured boot: systemd-pcrphase extends PCR 11 with "sysinit" and "ready" after systemd-stub's
# measurements (the service predicts those values). The units have no [Install] section; systemd's
# own builds pull them in from sysinit.target, Debian's do not. They skip themselves without a TPM.
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
for unit in systemd-pcrphase-sysinit.service systemd-pcrphase.service; do
    [ -f "$root/usr/lib/systemd/system/$unit" ] || die "no $unit in the image's systemd"
    ln -sfn "/usr/lib/systemd/system/$unit" "$root/etc/systemd/system/sysinit.target.wants/$unit"
done
# systemd loads the TPM libraries at run time (dlopen): no linker check would see them missing.
for lib in libtss2-esys.so.0 libtss2-rc.so.0 libtss2-mu.so.0 libtss2-tcti-device.so.0; do
    [ -n "$(find "$root/usr/lib" -name "$lib" -print -quit)" ] || die "$lib is missing: systemd-pcrphase could not extend PCR 11"
done
# Nothing in RAM needs periodic maintenance, first-boot prompts would block the console, the
# Debian kernel has no binfmt_misc module, and NVMe over Fabrics is not part of provisioning.
systemctl --root="$root" mask \
    systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
    nvmf-autoconnect.service nvmefc-boot-connections.service

# Leftovers of the package installation that only cost RAM.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old

# Every dynamic library a binary asks for must be in the image (catches over-eager excludes).
find "$root/usr/lib" \( -type f -o -type l \) -name '*.so*' -printf '%f\n' | sort -u > "$stage/libs.txt"
missing=$({ find "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib/systemd" -type f -perm -u+x \
    -exec readelf -d {} "$root"/usr/lib/*/qemu/*.so + 2>/dev/null || true; } | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $5); print $5 }' | sort -u |
    comm -23 - "$stage/libs.txt")
[ -z "$missing" ] || die "libraries needed but missing from the image: $missing"

{
    echo "# kernel $kver"
    echo "## packages"; cat "$stage/packages.txt"
    echo "## modules"; sed "s|^$fullmods/lib/modules/$kver/||" "$stage/modules.txt"
    echo "## firmware"; cat "$stage/firmware.txt"
    echo "## qemu modules"; cat "$stage/qemu-modules.txt"
} > "$stage/contents.txt"

# --- pack -----------------------------------------------------------------------------------------

log "packing ($(du -sh "$root" | cut -f1) unpacked, zstd -$zstd_level)"
tmp=$outdir/.initramfs-$arch.img.tmp
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc) |
    zstd -q -"$zstd_level" -T0 -o "$tmp" -f
mv "$tmp" "$outdir/initramfs-$arch.img"
log "$outdir/initramfs-$arch.img: $(du -h "$outdir/initramfs-$arch.img" | cut -f1) in $(( $(date +%s) - started )) s"
