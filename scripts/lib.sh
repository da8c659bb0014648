# Shared helpers for the kit's set-up scripts (sourced, not run).
# Each step prints one line with its duration, so set-up time per step is visible.

p4cf_log() { printf '[p4cf setup] %s\n' "$*"; }
p4cf_die() { printf '[p4cf setup] error: %s\n' "$*" >&2; exit 1; }

# p4cf_step NAME COMMAND...: run a step and report how long it took.
p4cf_step() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" || p4cf_die "step '$name' failed (see the output above)"
    t1=$(date +%s.%N)
    printf '[p4cf setup] %-28s %6.1f s\n' "$name" "$(echo "$t1 - $t0" | bc 2>/dev/null || echo 0)"
}

p4cf_need_root() {
    [ "$(id -u)" = 0 ] || p4cf_die "run as root (the kit drives Podman, CRIU and network namespaces): sudo $0"
}

# p4cf_missing_packages PKG...: print the packages that dpkg does not have installed.
p4cf_missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

p4cf_apt_install() {
    local missing
    missing=$(p4cf_missing_packages "$@")
    [ -z "$missing" ] && return 0
    p4cf_log "installing: $(echo $missing)"
    if [ ! -f /var/lib/p4cf/.apt-updated ] || [ -n "$(find /var/lib/p4cf/.apt-updated -mmin +1440 2>/dev/null)" ]; then
        apt-get update -qq || return 1
        mkdir -p /var/lib/p4cf && touch /var/lib/p4cf/.apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
