#!/bin/bash
# Builds the tiny busybox initramfs that the fast end-to-end tests boot:
# <outdir>/initramfs-tiny-<arch>.img (gzip newc cpio, reproducible: sorted, mtime 0, uid/gid 0).
#
# usage: base-artifacts/tiny/build.sh <amd64|arm64> <outdir> <workdir>
#
# Contents: static busybox for <arch>, /init (this directory's `init`), the udhcpc hook, and
# virtio-net with its dependencies taken from the Debian kernel that fetch-kernel.sh extracts
# (run here, so <outdir>/vmlinuz-<arch> is produced too). What /init prints is documented in `init`.
#
# pipefail: a failing stage of a pipeline (fetch-kernel.sh, find, cpio) fails the build instead of
# shipping what the last stage made of its truncated output. So no pipeline here stops reading early
# (as `head -n 1` does): the stage before it would die of SIGPIPE and fail the build.
set -euo pipefail

usage() { echo "usage: $0 <amd64|arm64> <outdir> <workdir>" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1 outdir=$2 workdir=$3
case $arch in
    amd64) elf_machine=62 ;;   # EM_X86_64
    arm64) elf_machine=183 ;;  # EM_AARCH64
    *) usage ;;
esac
# Modules /init loads; their dependencies are resolved below from each module's .modinfo.
wanted_modules="virtio_pci virtio_net"  # the PCI transport is no dependency of the driver

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
mkdir -p "$outdir" "$workdir"
outdir=$(cd "$outdir" && pwd)
workdir=$(cd "$workdir" && pwd)
out=$outdir/initramfs-tiny-$arch.img

modules=$("$here/../fetch-kernel.sh" "$arch" "$outdir" "$workdir" | sed -n 's/^MODULES_DIR=//p' | tail -n 1)
[ -d "$modules" ] || { echo "tiny: no modules tree from fetch-kernel.sh" >&2; exit 1; }

# The ELF header's e_machine field (offset 18, little endian) tells whether a binary fits <arch>.
check_elf() {
    m=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
    [ "$m" = "$elf_machine" ] || { echo "tiny: $1 is not an $arch ELF (e_machine $m)" >&2; exit 1; }
}

# Static busybox of the target architecture, extracted from the package (it cannot be co-installed
# with the host's for a foreign architecture, and need not be installed for the native one).
bbdir=$workdir/busybox-$arch
if [ ! -x "$bbdir/bin/busybox" ]; then
    if [ "$arch" = "$(dpkg --print-architecture)" ]; then qual=; else qual=":$arch"; fi
    dl=$workdir/deb-busybox-$arch
    rm -rf "$dl" "$bbdir"
    mkdir -p "$dl"
    chmod 0777 "$dl"
    echo "tiny: apt-get download busybox-static$qual" >&2
    (cd "$dl" && apt-get download -q "busybox-static$qual" >&2)
    dpkg -x "$dl"/*.deb "$bbdir"
    rm -rf "$dl"
fi
check_elf "$bbdir/bin/busybox"

root=$workdir/tiny-$arch
rm -rf "$root"
mkdir -p "$root"
(cd "$root" && mkdir -p bin dev etc lib/modules proc root run sys tmp var)

install -m 0755 "$bbdir/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"

# Module names use '_', file names sometimes '-'.
find_module() {
    alt=$(echo "$1" | tr _ -)
    find "$modules/kernel" \( -name "$1.ko" -o -name "$1.ko.*" -o -name "$alt.ko" -o -name "$alt.ko.*" \) -print -quit
}
is_builtin() {
    alt=$(echo "$1" | tr _ -)
    grep -q -E "/($1|$alt)\.ko\$" "$modules/modules.builtin" 2>/dev/null
}
seen=
order=
# Stages one module (decompressed: busybox insmod may not read .xz/.zst) after its dependencies.
add_module() {
    local name file dep deps
    name=$1
    case " $seen " in *" $name "*) return 0 ;; esac
    seen="$seen $name"
    if is_builtin "$name"; then
        echo "tiny: $name is built into the kernel" >&2
        return 0
    fi
    file=$(find_module "$name")
    [ -n "$file" ] || { echo "tiny: module $name not found in $modules" >&2; exit 1; }
    case $file in
        *.xz) xz -dc "$file" ;;
        *.zst) zstd -qdc "$file" ;;
        *.gz) gzip -dc "$file" ;;
        *) cat "$file" ;;
    esac > "$root/lib/modules/$name.ko"
    check_elf "$root/lib/modules/$name.ko"
    # .modinfo holds NUL-separated key=value strings, one of them depends=a,b,c.
    deps=$(tr '\0' '\n' < "$root/lib/modules/$name.ko" | sed -n '0,/^depends=/s/^depends=//p' | tr , ' ')
    for dep in $deps; do
        add_module "$dep"
    done
    order="$order $name"
}
for m in $wanted_modules; do add_module "$m"; done
printf '%s\n' $order > "$root/etc/uod-modules"
echo "tiny: modules (load order):$order" >&2

# A console node lets the kernel hand init its stdio; without the privilege to create one,
# /init reopens /dev/console from devtmpfs instead.
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || echo "tiny: no mknod, /init will reopen the console" >&2

chmod 0755 "$root" "$root/bin" "$root/dev" "$root/etc" "$root/lib" "$root/lib/modules" \
    "$root/proc" "$root/run" "$root/sys" "$root/var"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
chmod 0644 "$root/etc/uod-modules" "$root/lib/modules/"*.ko
find "$root" -exec touch -h -d @0 {} +

trap 'rm -f "$out.tmp"' EXIT
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n > "$out.tmp"
mv "$out.tmp" "$out"
echo "tiny: $out ($(wc -c < "$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))" >&2
