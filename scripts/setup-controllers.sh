#!/usr/bin/env bash
# Independent P4Runtime controllers for tests/test_controllers.py, each in its own venv under
# .venv-controllers/: they need other protobuf/grpcio versions than the kit's pins
# (p4runtime-shell pins protobuf<3.21), and finsy and aiop4 do not resolve together either.
# Idempotent: a venv is (re)built only when its pin below changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
PY=${P4CF_PYTHON:-python3}
base="$root/.venv-controllers"

# name=pip requirement; the versions the tests were written against.
CONTROLLERS=("finsy=finsy==0.30.0" "aiop4=aiop4==0.4.1")

controller_venv() {
    local name=$1 req=$2 venv="$base/$1"
    local stamp="$venv/.p4cf-requirement"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req" ] && [ -x "$venv/bin/python" ]; then
        return 0
    fi
    rm -rf "$venv"
    "$PY" -m venv "$venv" || p4cf_die "could not create $venv with $PY; install python3-venv or set P4CF_PYTHON"
    "$venv/bin/pip" install -q --disable-pip-version-check "$req" \
        || p4cf_die "could not install $req into $venv (PyPI reachable?)"
    echo "$req" > "$stamp"
}

mkdir -p "$base"
for entry in "${CONTROLLERS[@]}"; do
    p4cf_step "controller venv ${entry%%=*}" controller_venv "${entry%%=*}" "${entry#*=}"
done
