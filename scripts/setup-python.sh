#!/usr/bin/env bash
# The kit's Python environment: .venv at the repository root with requirements.txt and the
# kit itself (editable). Idempotent: reinstalls only when requirements.txt changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
PY=${P4CF_PYTHON:-python3}
venv="$root/.venv"
stamp="$venv/.p4cf-requirements.sha256"

make_venv() {
    if [ ! -x "$venv/bin/python" ]; then
        "$PY" -m venv "$venv" || p4cf_die "could not create $venv with $PY; install python3-venv (apt-get install python3-venv) or set P4CF_PYTHON"
        "$venv/bin/pip" install -q --upgrade pip
    fi
}

install_requirements() {
    local want
    # setup.py and the C sources too (the C fast path, the eBPF program and its loader, their
    # shared header): an edit to any rebuilds them. So do newly installed clang or libbpf-dev.
    want=$({ cat "$root/requirements.txt" "$root/pyproject.toml" "$root/setup.py" \
                 "$root"/p4cf_kit/switch/embedded/*.[ch] "$root"/p4cf_kit/switch/embedded/ebpf/*.c \
                 2>/dev/null || true; command -v clang; ls /usr/include/bpf/libbpf.h 2>/dev/null; } \
           | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    "$venv/bin/pip" install -q -r "$root/requirements.txt"
    "$venv/bin/pip" install -q --no-deps -e "$root"
    echo "$want" > "$stamp"
}

# The notebooks' kernel reports no Python patch version, so notebooks open without unsaved changes.
install_kernel() {
    "$venv/bin/python" -m p4cf_kit.notebook.kernel --install >/dev/null
}

p4cf_step "python venv" make_venv
p4cf_step "python packages" install_requirements
p4cf_step "jupyter kernel" install_kernel

# pycriu (from scripts/setup-criu.sh) into the venv, when CRIU's set-up has run.
if [ -f "${P4CF_PYCRIU_DIR:-/usr/local/lib/p4cf/python}/pycriu/__init__.py" ]; then
    bash "$here/link-pycriu.sh"
fi
