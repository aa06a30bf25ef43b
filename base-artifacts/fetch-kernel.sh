#!/bin/sh
# Fetches the current Debian kernel for one architecture without installing it into the host:
# <outdir>/vmlinuz-<arch> plus the extracted modules tree in <workdir> for initramfs builders.
#
# usage: base-artifacts/fetch-kernel.sh <amd64|arm64> <outdir> <workdir>
#
# Produces:
#   <outdir>/vmlinuz-<arch>                       the EFI-stub kernel image
#   <workdir>/kernel-<arch>/                      the package's files (dpkg -x)
#   <workdir>/kernel-<arch>.env                   KERNEL_PACKAGE=, KERNEL_VERSION=, MODULES_DIR= (sourceable)
# and prints MODULES_DIR=<path> as its last line. Skips the download when the recorded package
# is still the current one.
set -eu

usage() { echo "usage: $0 <amd64|arm64> <outdir> <workdir>" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1 outdir=$2 workdir=$3
case $arch in amd64|arm64) ;; *) usage ;; esac

mkdir -p "$outdir" "$workdir"
outdir=$(cd "$outdir" && pwd)
workdir=$(cd "$workdir" && pwd)

# apt names a foreign-architecture package name:arch; the native one has no suffix.
if [ "$arch" = "$(dpkg --print-architecture)" ]; then qual=; else qual=":$arch"; fi

# linux-image-<arch> is a metapackage; its dependency names the versioned kernel package.
resolve() {
    apt-cache depends "linux-image-$arch$qual" 2>/dev/null |
        sed -n "s/^ *Depends: \(linux-image-[^ :<>]*-$arch\)\(:$arch\)\{0,1\}\$/\1/p" | head -n 1
}
pkg=$(resolve)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
    # Container images often ship without package lists.
    echo "fetch-kernel: apt-get update" >&2
    apt-get update -q </dev/null >&2
    pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
    echo "fetch-kernel: cannot resolve linux-image-$arch$qual (is the $arch dpkg architecture added and apt updated?)" >&2
    exit 1
fi

envfile=$workdir/kernel-$arch.env
tree=$workdir/kernel-$arch
if [ -f "$envfile" ] && [ -f "$outdir/vmlinuz-$arch" ]; then
    # shellcheck disable=SC1090
    . "$envfile"
    if [ "${KERNEL_PACKAGE:-}" = "$pkg" ] && [ -d "${MODULES_DIR:-/nonexistent}" ]; then
        echo "fetch-kernel: $pkg already fetched ($outdir/vmlinuz-$arch)" >&2
        echo "MODULES_DIR=$MODULES_DIR"
        exit 0
    fi
fi

dl=$workdir/deb-$arch
rm -rf "$dl" "$tree"
mkdir -p "$dl"
# apt drops privileges to _apt for downloads; let it write here.
chmod 0777 "$dl"
echo "fetch-kernel: apt-get download $pkg$qual" >&2
(cd "$dl" && apt-get download -q "$pkg$qual" >&2)
deb=$(ls "$dl"/*.deb)
echo "fetch-kernel: dpkg -x $(basename "$deb") $tree" >&2
dpkg -x "$deb" "$tree"
rm -rf "$dl"

vmlinuz=$(ls "$tree"/boot/vmlinuz-* | head -n 1)
version=${vmlinuz##*/vmlinuz-}
if [ -d "$tree/lib/modules/$version" ]; then
    modules=$tree/lib/modules/$version
else
    modules=$tree/usr/lib/modules/$version
fi
[ -d "$modules" ] || { echo "fetch-kernel: no modules tree for $version in $tree" >&2; exit 1; }

# Copy through a temporary name so a half-written kernel is never taken for a finished one.
cp "$vmlinuz" "$outdir/.vmlinuz-$arch.tmp"
mv "$outdir/.vmlinuz-$arch.tmp" "$outdir/vmlinuz-$arch"

printf 'KERNEL_PACKAGE=%s\nKERNEL_VERSION=%s\nMODULES_DIR=%s\n' "$pkg" "$version" "$modules" > "$envfile"
echo "fetch-kernel: $outdir/vmlinuz-$arch ($version)" >&2
echo "MODULES_DIR=$modules"
