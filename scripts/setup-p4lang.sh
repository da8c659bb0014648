#!/usr/bin/env bash
# BMv2 (simple_switch_grpc with P4Runtime) and p4c (BMv2 back end) for the kit's BMv2 target.
#
# Why tarballs: neither tool is packaged for the distributions our machines reach, so they come
# as p4lang builds for Debian 12 amd64 (P4LANG-BUILD.md beside them says how they were made).
#   P4CF_P4LANG_DIR=/folder/with/tarballs make p4lang
# The folder holds p4lang-bmv2-*-debian12-amd64.tar.xz and/or p4lang-p4c-*-debian12-amd64.tar.xz
# and a SHA256SUMS that lists them. Every tarball is checked before anything is installed: one
# mismatch and nothing is installed. They unpack under /opt/p4lang; their run-time packages come
# from apt. What was installed is recorded in /opt/p4lang/share/p4cf/<tool>.installed (tarball,
# SHA-256, file list), so a rerun with the same tarballs is a quiet no-op and another version
# replaces the files of the old one.
#
# Without the variable nothing is changed: when the tools are missing, the ways to get them are
# printed (BMv2 is optional; only the BMv2 target needs it).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

PREFIX=/opt/p4lang   # the tarballs' own prefix (their RUNPATH points there)
STAMP_DIR=$PREFIX/share/p4cf
COMPONENTS=(bmv2 p4c)
# Run-time packages per tarball (P4LANG-BUILD.md, "Runtime packages (Debian 12)").
BMV2_PACKAGES=(libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libthrift-0.17.0
               libboost-program-options1.74.0 libgmp10 libpcap0.8 libxxhash0 libjsoncpp25 libnanomsg5)
P4C_PACKAGES=(libgc1 libboost-iostreams1.74.0 python3 gcc)

packages_of() { case $1 in bmv2) echo "${BMV2_PACKAGES[@]}" ;; p4c) echo "${P4C_PACKAGES[@]}" ;; esac; }
binary_of() { case $1 in bmv2) echo simple_switch_grpc ;; p4c) echo p4c ;; esac; }

# tarball_in DIR COMPONENT: the newest p4lang-COMPONENT-*-debian12-amd64.tar.xz in DIR, or nothing.
tarball_in() {
    { ls "$1"/p4lang-"$2"-*-debian12-amd64.tar.xz 2>/dev/null || true; } | sort -V | tail -n1
}

# listed_sum SUMS NAME: the SHA-256 that SHA256SUMS gives for NAME, or nothing.
listed_sum() {
    awk -v n="$2" '$2 == n || $2 == "*"n {print $1}' "$1"
}

# installed COMPONENT NAME SUM: true when the kit installed exactly this tarball and its binary runs.
installed() {
    local stamp=$STAMP_DIR/$1.installed
    [ -f "$stamp" ] && grep -qx "tarball=$2" "$stamp" && grep -qx "sha256=$3" "$stamp" \
        && [ -x "$PREFIX/bin/$(binary_of "$1")" ] \
        && [ -z "$(p4cf_missing_packages $(packages_of "$1"))" ]
}

tool_found() {  # on PATH or under the prefix
    command -v "$1" >/dev/null 2>&1 || [ -x "$PREFIX/bin/$1" ]
}

print_ways() {
    cat <<EOF
[p4cf setup] BMv2/p4c: not installed (optional: only the BMv2 target needs them). Ways to get them:
  - p4lang's prebuilt tarballs (Debian 12 amd64):  P4CF_P4LANG_DIR=/folder/with/tarballs make p4lang
    (the folder holds p4lang-bmv2-*.tar.xz, p4lang-p4c-*.tar.xz and their SHA256SUMS)
  - p4lang's images, used in place:  podman pull docker.io/p4lang/behavioral-model docker.io/p4lang/p4c
  - p4lang's packages (p4lang-bmv2, p4lang-p4c) from p4lang's package repository (p4c's README)
  - building from source (p4lang/behavioral-model with --with-pi, p4lang/p4c); README "BMv2 target"
EOF
}

check_platform() {
    local arch id ver
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    id=$(. /etc/os-release && echo "${ID:-}"); ver=$(. /etc/os-release && echo "${VERSION_ID:-}")
    [ "$arch" = amd64 ] && [ "$id" = debian ] && [ "$ver" = 12 ] \
        || p4cf_die "the p4lang tarballs in $P4CF_P4LANG_DIR are built for Debian 12 amd64, this is $id $ver $arch; unset P4CF_P4LANG_DIR and use p4lang's images or a source build (README 'BMv2 target')"
}

# unpack COMPONENT TARBALL SUM: replace the files of an older kit install, unpack, record.
unpack() {
    local comp=$1 tarball=$2 sum=$3 stamp=$STAMP_DIR/$1.installed old
    if [ -f "$stamp" ]; then
        sed -n 's|^file=||p' "$stamp" | while read -r old; do
            if [ -e "/$old" ] || [ -L "/$old" ]; then rm -f "/$old"; fi
        done
    fi
    tar -C / --no-same-owner --no-overwrite-dir -xJf "$tarball" || return 1
    mkdir -p "$STAMP_DIR"
    {
        printf 'tarball=%s\nsha256=%s\n' "$(basename "$tarball")" "$sum"
        tar -tJf "$tarball" | grep -v '/$' | sed 's|^|file=|'
    } > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
}

main() {
    if [ -z "${P4CF_P4LANG_DIR:-}" ]; then
        tool_found simple_switch_grpc && tool_found p4c && exit 0
        print_ways
        exit 0
    fi
    local dir=$P4CF_P4LANG_DIR sums comp tarball want have
    [ -d "$dir" ] || p4cf_die "P4CF_P4LANG_DIR=$dir: no such folder"
    sums=$dir/SHA256SUMS
    local -A found=() wanted=()
    for comp in "${COMPONENTS[@]}"; do
        tarball=$(tarball_in "$dir" "$comp")
        [ -n "$tarball" ] && found[$comp]=$tarball
    done
    [ "${#found[@]}" -gt 0 ] || p4cf_die "P4CF_P4LANG_DIR=$dir holds no p4lang-bmv2-*-debian12-amd64.tar.xz or p4lang-p4c-*-debian12-amd64.tar.xz"
    [ -f "$sums" ] || p4cf_die "$dir has no SHA256SUMS; the tarballs are installed only when their sums are listed"
    for comp in "${!found[@]}"; do
        want=$(listed_sum "$sums" "$(basename "${found[$comp]}")")
        [ -n "$want" ] || p4cf_die "$sums has no line for $(basename "${found[$comp]}"); nothing installed"
        wanted[$comp]=$want
    done

    local todo=()
    for comp in "${COMPONENTS[@]}"; do
        [ -n "${found[$comp]:-}" ] || continue
        installed "$comp" "$(basename "${found[$comp]}")" "${wanted[$comp]}" || todo+=("$comp")
    done
    [ "${#todo[@]}" -eq 0 ] && exit 0

    p4cf_need_root
    check_platform
    # Check every tarball first: one mismatch and nothing at all is installed.
    for comp in "${todo[@]}"; do
        have=$(sha256sum "${found[$comp]}" | cut -d' ' -f1)
        [ "$have" = "${wanted[$comp]}" ] \
            || p4cf_die "SHA-256 of ${found[$comp]} is $have, SHA256SUMS says ${wanted[$comp]}; nothing installed (fetch the tarball again)"
    done
    for comp in "${todo[@]}"; do
        p4cf_step "$comp run-time packages" p4cf_apt_install $(packages_of "$comp")
        p4cf_step "$comp unpack" unpack "$comp" "${found[$comp]}" "${wanted[$comp]}"
        "$PREFIX/bin/$(binary_of "$comp")" --version >/dev/null 2>&1 \
            || p4cf_die "$PREFIX/bin/$(binary_of "$comp") --version fails after install; run it to see why"
        p4cf_log "$comp: $(basename "${found[$comp]}") installed under $PREFIX"
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
