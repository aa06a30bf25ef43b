# Sourced by the OS image builders: the host's own apt sources are the only mirrors they can reach.
# shellcheck shell=bash

# Prints "<uri> <suite>" for every enabled deb source of the host (one-line and deb822 formats).
host_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -e 's/#.*//' "$f" | awk '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            print $i, $(i + 1) }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no")
                    for (u in uris) for (s in suites) print uris[u], suites[s]
                types = ""; enabled = ""; delete uris; delete suites
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            { key = tolower($1); sub(/:$/, "", key); $1 = "" }
            key == "types" { types = $0 }
            key == "enabled" { enabled = tolower($2) }
            key == "uris" { for (i = 2; i <= NF; i++) uris[i] = $i }
            key == "suites" { for (i = 2; i <= NF; i++) suites[i] = $i }
            END { flush() }' "$f"
    done
}

# Prints the URI of the host's first enabled deb source for one suite (empty when there is none).
host_mirror() {
    host_sources | awk -v s="$1" '$2 == s { print $1; exit }'
}
