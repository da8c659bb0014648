#!/usr/bin/env bash
# CRIU >= 4.2 with its Python module pycriu, for checkpoint/restore of containers with
# established TCP connections.
#
# Why from source: Debian 12's CRIU 3.17 fails its vDSO probe and Debian 13's 4.1.1 cannot
# dump TCP sockets on kernels >= 6.16. Idempotent and quiet: when `criu` on PATH is >= 4.2,
# `criu check` passes and pycriu is in place, it prints nothing and changes nothing.
#
# Source, in this order:
#   P4CF_CRIU_TARBALL=/path/criu_4.2.1.orig.tar.xz   (checked against a SHA256SUMS file beside it)
#   otherwise Debian's source archive through apt itself (a deb-src entry derived from the
#   machine's own apt sources, kept in a kit-owned directory; system config is not touched).
# Installs under /usr/local (criu in /usr/local/sbin, pycriu in $P4CF_PYCRIU_DIR).
#
# The kit's build carries the patches in scripts/criu-patches/ (each says why; today one:
# poll the cgroup freezer every 1 ms instead of sleeping a first 100 ms step, which was
# a third of a migration's downtime). A kit build from other patches is rebuilt; a CRIU
# >= 4.2 the user installed is kept as it is.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

CRIU_MIN=4.2
CRIU_SUITE=${P4CF_CRIU_SUITE:-unstable}          # a Debian suite whose criu is >= 4.2
PREFIX=/usr/local
PYCRIU_DIR=${P4CF_PYCRIU_DIR:-$PREFIX/lib/p4cf/python}   # holds pycriu/ only; the venv gets a .pth to it
BUILD_ROOT=${P4CF_BUILD_DIR:-/var/lib/p4cf/build}
PATCH_DIR=$here/criu-patches
# CRIU caches what it learns of the kernel (criu.kdat) only on a tmpfs. Its default, /run, is
# not one on every machine (our VMs: ext4), and without the cache every dump and restore
# probes the kernel again (iptables -L, test veths, ...). The kit's build keeps it here.
CRIU_RUNDIR=${P4CF_CRIU_RUNDIR:-/dev/shm/p4cf-criu-run}
BUILD_STAMP=$PREFIX/lib/p4cf/criu-build     # written by the kit's build: what it was built from
export PATH="$PREFIX/sbin:$PREFIX/bin:$PATH"

BUILD_PACKAGES=(
    build-essential pkg-config python3
    protobuf-c-compiler libprotobuf-c-dev protobuf-compiler libprotobuf-dev
    libnl-3-dev libnet1-dev libcap-dev libaio-dev libbsd-dev uuid-dev libnftables-dev
    iptables xz-utils patch
)

# criu_version: the version of the criu on PATH ("4.2.1"), or nothing.
criu_version() {
    command -v criu >/dev/null || return 0
    criu --version 2>/dev/null | sed -n 's/^Version: *\([0-9.]*\).*/\1/p' | head -n1
}

version_at_least() {  # version_at_least HAVE WANT
    [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

criu_ready() {
    version_at_least "$(criu_version)" "$CRIU_MIN" && criu check >/dev/null 2>&1
}

# patches_id: one short hash for the patches the kit applies and its build settings.
patches_id() {
    { cat "$PATCH_DIR"/*.patch 2>/dev/null; echo "RUNDIR=$CRIU_RUNDIR"; } | sha256sum | cut -c1-16
}

# kit_build_current: false when the criu on PATH is a kit build (its pycriu lives in the
# kit's directory) from other patches than today's; anyone else's CRIU counts as current.
kit_build_current() {
    [ "$(command -v criu)" = "$PREFIX/sbin/criu" ] || return 0
    [ -f "$BUILD_STAMP" ] || [ -d "$PYCRIU_DIR/pycriu" ] || return 0
    grep -qx "patches=$(patches_id)" "$BUILD_STAMP" 2>/dev/null
}

apply_patches() {  # apply_patches SRC: the kit's patches, in name order
    local p
    for p in "$PATCH_DIR"/*.patch; do
        [ -f "$p" ] || continue
        patch -d "$1" -p1 --quiet --forward < "$p" || p4cf_die "CRIU patch $(basename "$p") does not apply to this source; use CRIU $CRIU_MIN.x or remove the patch"
    done
}

pycriu_ready() {
    [ -f "$PYCRIU_DIR/pycriu/__init__.py" ] && [ -f "$PYCRIU_DIR/pycriu/rpc_pb2.py" ]
}

# adopt_system_pycriu: when a packaged CRIU >= 4.2 brought its own pycriu, point the kit's
# directory at it instead of building (only pycriu is exposed, not all of dist-packages).
adopt_system_pycriu() {
    local dir
    dir=$(/usr/bin/python3 -c 'import os, pycriu; print(os.path.dirname(pycriu.__file__))' 2>/dev/null) || return 1
    [ -f "$dir/rpc_pb2.py" ] || return 1
    mkdir -p "$PYCRIU_DIR"
    ln -sfn "$dir" "$PYCRIU_DIR/pycriu"
}

verify_tarball() {  # verify_tarball FILE: SHA-256 against SHA256SUMS beside it, if there is one
    local file=$1 sums want have
    sums="$(dirname "$file")/SHA256SUMS"
    [ -f "$sums" ] || { p4cf_log "note: no SHA256SUMS beside $file; not verified"; return 0; }
    want=$(awk -v n="$(basename "$file")" '$2 == n || $2 == "*"n {print $1}' "$sums")
    [ -n "$want" ] || p4cf_die "$sums has no line for $(basename "$file"); add its SHA-256 or point P4CF_CRIU_TARBALL at the listed file"
    have=$(sha256sum "$file" | cut -d' ' -f1)
    [ "$have" = "$want" ] || p4cf_die "SHA-256 of $file is $have, SHA256SUMS says $want; fetch the tarball again"
}

# apt_source_tarball DIR: download criu's source from Debian's archive (suite $CRIU_SUITE)
# with apt, using a deb-src entry derived from the URIs the machine already uses. Everything
# apt writes for this goes under DIR; /etc/apt stays as it is. Prints the orig tarball path.
apt_source_tarball() {
    local dir=$1 uri keyring
    . /etc/os-release
    [ "${ID:-}" = debian ] || p4cf_die "no CRIU source: on ${PRETTY_NAME:-this system} get the CRIU >= $CRIU_MIN source tarball (criu_4.2.1.orig.tar.xz, upstream release) and run: P4CF_CRIU_TARBALL=/path/to/it make criu"
    uri=$(debian_archive_uri) || p4cf_die "found no Debian archive URI in /etc/apt/sources.list(.d); set P4CF_CRIU_TARBALL to a CRIU >= $CRIU_MIN source tarball"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || p4cf_die "missing $keyring: apt-get install debian-archive-keyring"
    rm -rf "$dir/apt" && mkdir -p "$dir/apt/sources.list.d" "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/src"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
        "$uri" "$CRIU_SUITE" "$keyring" > "$dir/apt/sources.list.d/p4cf-criu-src.sources"
    local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$dir/apt/sources.list.d"
                -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
                -o "APT::Get::List-Cleanup=false" -qq)
    apt-get "${opts[@]}" update >&2 || p4cf_die "apt could not read the $CRIU_SUITE source index from $uri"
    # apt downloads as the unprivileged _apt user where it exists; let it write there.
    id -u _apt >/dev/null 2>&1 && chown _apt "$dir/src"
    # --tar-only: just the upstream tarball (hash-checked by apt against the signed index).
    (cd "$dir/src" && apt-get "${opts[@]}" source --download-only --tar-only "criu" >&2) \
        || p4cf_die "apt could not download the criu source from $CRIU_SUITE; set P4CF_CRIU_SUITE or P4CF_CRIU_TARBALL"
    rm -rf "$dir/apt"   # the source index (25 MB) is not needed any more
    ls "$dir"/src/criu_*.orig.tar.* 2>/dev/null | sort -V | tail -n1
}

# debian_archive_uri: the first URI of a Debian archive (not -security) in the apt sources.
debian_archive_uri() {
    local f
    {
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] && awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] && awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
        done
    } | grep -E '/debian/?$' | grep -v -- '-security' | head -n1 | grep .
}

build_and_install() {
    local tarball=$1 src log
    mkdir -p "$BUILD_ROOT"
    rm -rf "$BUILD_ROOT/criu-src" && mkdir -p "$BUILD_ROOT/criu-src"
    tar -xf "$tarball" -C "$BUILD_ROOT/criu-src" --strip-components=1 \
        || p4cf_die "could not unpack $tarball"
    src="$BUILD_ROOT/criu-src"
    log="$BUILD_ROOT/criu-build.log"
    apply_patches "$src"
    # PYTHON: the system interpreter, so pyenv or a venv on PATH does not leak into the build.
    local mk=(make -C "$src" -j"$(nproc)" PREFIX="$PREFIX" RUNDIR="$CRIU_RUNDIR" PYTHON=/usr/bin/python3 SKIP_PIP_INSTALL=1)
    if ! { "${mk[@]}" criu lib && "${mk[@]}" install-criu install-lib; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        p4cf_die "CRIU build failed; full log: $log"
    fi
    ldconfig
    # pycriu: the package tree with its protoc-generated *_pb2.py (kept out of any site-packages).
    rm -rf "$PYCRIU_DIR/pycriu" && mkdir -p "$PYCRIU_DIR"
    cp -r "$src/lib/pycriu" "$PYCRIU_DIR/pycriu"
    find "$PYCRIU_DIR/pycriu" \( -name Makefile -o -name '*.o' -o -name '*.d' -o -name '__pycache__' \) -prune -exec rm -rf {} +
    mkdir -p "$(dirname "$BUILD_STAMP")"
    printf 'source=%s\npatches=%s\nrundir=%s\n' "$(basename "$tarball")" "$(patches_id)" "$CRIU_RUNDIR" > "$BUILD_STAMP"
    rm -rf "$src"   # 50 MB of objects; the log stays for reference
}

main() {
    p4cf_need_root
    command -v apt-get >/dev/null || p4cf_die "this set-up supports Debian (apt). Elsewhere build CRIU >= $CRIU_MIN from source (https://criu.org/Installation) with pycriu, then run scripts/link-pycriu.sh"

    if criu_ready && kit_build_current && { pycriu_ready || adopt_system_pycriu; }; then
        mkdir -p -m 0700 "$CRIU_RUNDIR"
        [ -x "$root/.venv/bin/python" ] && bash "$here/link-pycriu.sh"
        exit 0
    fi

    local have tarball t0
    have=$(criu_version)
    if criu_ready && ! kit_build_current; then
        p4cf_log "CRIU $have: the kit's build is from other patches; rebuilding"
    else
        p4cf_log "CRIU ${have:-not found}: building CRIU from source (needs >= $CRIU_MIN with pycriu)"
    fi
    p4cf_step "criu build packages" p4cf_apt_install "${BUILD_PACKAGES[@]}"

    if [ -n "${P4CF_CRIU_TARBALL:-}" ]; then
        tarball=$(cd "$(dirname "$P4CF_CRIU_TARBALL")" 2>/dev/null && pwd)/$(basename "$P4CF_CRIU_TARBALL") \
            || p4cf_die "P4CF_CRIU_TARBALL=$P4CF_CRIU_TARBALL: directory not found"
        [ -f "$tarball" ] || p4cf_die "P4CF_CRIU_TARBALL=$P4CF_CRIU_TARBALL: no such file"
        p4cf_step "criu source check" verify_tarball "$tarball"
    else
        t0=$(date +%s)
        tarball=$(apt_source_tarball "$BUILD_ROOT/criu-apt")
        [ -n "$tarball" ] || p4cf_die "apt downloaded no criu orig tarball into $BUILD_ROOT/criu-apt/src"
        p4cf_log "criu source: $tarball ($(( $(date +%s) - t0 )) s)"
    fi

    p4cf_step "criu build+install" build_and_install "$tarball"
    mkdir -p -m 0700 "$CRIU_RUNDIR"
    criu_ready || p4cf_die "CRIU $(criu_version) installed but \`criu check\` fails; run \`criu check\` to see why (kernel features)"
    p4cf_log "criu $(criu_version) at $(command -v criu); pycriu in $PYCRIU_DIR"
    if [ -x "$root/.venv/bin/python" ]; then
        bash "$here/link-pycriu.sh"
    fi
}

# Sourcing this file (bash -c '. scripts/setup-criu.sh; apt_source_tarball DIR') only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
