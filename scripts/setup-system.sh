#!/usr/bin/env bash
# System packages the kit needs (Debian 12/13, Ubuntu 22.04+); `--test` adds the test suite's.
# Idempotent: installs only what is missing and prints nothing when all is there.
# Never edits system config.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
p4cf_need_root
command -v apt-get >/dev/null || p4cf_die "this set-up supports Debian and Ubuntu (apt). Elsewhere install by hand: podman runc netavark aardvark-dns iproute2 nftables ethtool busybox (static) and CRIU >= 4.2 with pycriu; see README 'Other systems'."

RUNTIME_PACKAGES=(
    podman runc netavark aardvark-dns conmon catatonit
    iproute2 iptables nftables ethtool busybox-static
    python3 python3-venv python3-dev
    tcpdump ca-certificates python3-protobuf
)
# Only the test suite needs these: Debian's Chromium drives the real-browser test (Playwright
# uses it; its own browser download cannot work offline).
# openssh-server: the emulated second machine's sshd (started only inside its namespace; the
# package's own service is not enabled where no init system runs it).
TEST_PACKAGES=(chromium openssh-server)
p4cf_step "system packages" p4cf_apt_install "${RUNTIME_PACKAGES[@]}"
if [ "${1:-}" = "--test" ]; then
    p4cf_step "test packages" p4cf_apt_install "${TEST_PACKAGES[@]}"
fi
