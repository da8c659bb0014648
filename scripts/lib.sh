# Shared helpers for the kit's set-up scripts (sourced, not run).
# Each step prints one line with its duration, so set-up time per step is visible.

p4cf_log() { printf '[p4cf setup] %s\n' "$*"; }
p4cf_die() { printf '[p4cf setup] error: %s\n' "$*" >&2; exit 1; }

# p4cf_step NAME COMMAND...: run a step and report how long it took. A step that had
# nothing to do (under half a second) stays quiet unless P4CF_VERBOSE=1.
p4cf_step() {
    local name=$1; shift
    local t0 t1 ms
    t0=$(date +%s%N)
    "$@" || p4cf_die "step '$name' failed (see the output above)"
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    if [ "$ms" -ge 500 ] || [ "${P4CF_VERBOSE:-0}" = 1 ]; then
        printf '[p4cf setup] %-28s %4d.%01d s\n' "$name" $((ms / 1000)) $(((ms % 1000) / 100))
    fi
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
