#!/bin/sh
# Installs the Debian packages listed in packages.apt (the project's single list of host
# dependencies). Idempotent and non-interactive: a no-op, without touching apt, when all are present.
#
# usage: scripts/install-deps.sh [packages-file]     (default: packages.apt next to scripts/)
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
list=${1:-"$here/../packages.apt"}
[ -r "$list" ] || { echo "install-deps: cannot read $list" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -n -- "$0" "$@"
    fi
    echo "install-deps: must run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
native=$(dpkg --print-architecture)

# Wanted packages, comments and blanks stripped.
wanted=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$list")

# Foreign architectures named in the list (e.g. arm64) must be known to dpkg before apt can see them.
for arch in $(printf '%s\n' "$wanted" | sed -n 's/^[^:]*:\(.*\)$/\1/p' | sort -u); do
    [ "$arch" = "$native" ] && continue
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        echo "install-deps: dpkg --add-architecture $arch"
        dpkg --add-architecture "$arch"
    fi
done

# One dpkg-query for everything: "name:arch" of each fully installed package.
# An unqualified name means the native architecture; Architecture: all satisfies either.
installed=$(dpkg-query -W -f='${Package}:${Architecture} ${db:Status-Abbrev}\n' 2>/dev/null |
    awk '$2 == "ii" { print $1 }')

missing=
for pkg in $wanted; do
    case $pkg in
        *:*) name=${pkg%%:*}; arch=${pkg#*:} ;;
        *) name=$pkg; arch=$native ;;
    esac
    if printf '%s\n' "$installed" | grep -qx -e "$name:$arch" -e "$name:all"; then
        continue
    fi
    missing="$missing $pkg"
done

if [ -z "$missing" ]; then
    echo "install-deps: all $(printf '%s\n' "$wanted" | wc -l) packages from $(basename "$list") are installed"
    exit 0
fi

echo "install-deps: missing:$missing"
echo "install-deps: apt-get update"
apt-get update -q </dev/null
echo "install-deps: apt-get install --no-install-recommends$missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing </dev/null
echo "install-deps: done"
