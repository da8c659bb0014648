#!/usr/bin/env bash
# System packages the kit needs (Debian 12/13, Ubuntu 22.04+). Idempotent: installs only
# what is missing and prints nothing else when all is there. Never edits system config.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
p4cf_need_root
command -v apt-get >/dev/null || p4cf_die "this set-up supports Debian and Ubuntu (apt). Elsewhere install by hand: podman runc netavark aardvark-dns iproute2 nftables ethtool busybox (static) and CRIU >= 4.2 with pycriu; see README 'Other systems'."
command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null 2>&1 || true

RUNTIME_PACKAGES=(
    podman runc netavark aardvark-dns conmon catatonit
    iproute2 iptables nftables ethtool busybox-static
    python3 python3-venv python3-dev
    tcpdump bc ca-certificates
)
p4cf_step "system packages" p4cf_apt_install "${RUNTIME_PACKAGES[@]}"
