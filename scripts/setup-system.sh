#!/usr/bin/env bash
# System packages the kit needs (Debian 12/13, Ubuntu 22.04+); `--test` adds the test suite's.
# Idempotent: installs only what is missing and prints nothing when all is there.
# Never edits system config.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
p4cf_need_root
command -v apt-get >/dev/null || p4cf_die "this set-up supports Debian and Ubuntu (apt). Elsewhere install by hand: podman runc netavark aardvark-dns iproute2 nftables ethtool busybox (static) and CRIU >= 4.2 with pycriu; see README 'Other systems'."

# redis-tools: the redis workload's image copies its redis-server binary (README "Workloads"); it
# installs no service (Debian's redis-server package would add one).
RUNTIME_PACKAGES=(
    podman runc netavark aardvark-dns conmon catatonit
    iproute2 iptables nftables ethtool busybox-static
    python3 python3-venv python3-dev
    tcpdump ca-certificates python3-protobuf
    redis-tools
)
# Only the test suite needs these: Debian's Chromium drives the real-browser test (Playwright
# uses it; its own browser download cannot work offline).
TEST_PACKAGES=(chromium)

# The emulated second machine (`p4cf machine emulate`, notebook 05, the tests) runs Debian's sshd
# inside its own namespace only. The kit needs the binary, not a service: where the kit installs
# the package itself and systemd runs, the package's own sshd (listening on every address) is
# stopped and disabled again. An sshd that was there before is left as it is.
ssh_server() {
    local fresh
    fresh=$(p4cf_missing_packages openssh-server openssh-client)
    p4cf_apt_install openssh-server openssh-client || return 1
    if echo "$fresh" | grep -qx openssh-server && [ -d /run/systemd/system ]; then
        systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
        p4cf_log "openssh-server installed for emulated machines; its own sshd service disabled"
    fi
}

p4cf_step "system packages" p4cf_apt_install "${RUNTIME_PACKAGES[@]}"
p4cf_step "sshd for emulated machines" ssh_server
if [ "${1:-}" = "--test" ]; then
    p4cf_step "test packages" p4cf_apt_install "${TEST_PACKAGES[@]}"
fi
