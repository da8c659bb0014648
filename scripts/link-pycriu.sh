#!/usr/bin/env bash
# Make pycriu (installed by scripts/setup-criu.sh) importable from the kit's .venv.
#
# Why a .pth file: pycriu is not on PyPI in a version matching CRIU 4.2, and its
# protoc-generated modules work with the venv's protobuf 3.20.x. The .pth adds only the
# kit's pycriu directory (nothing else from the system) to the venv's sys.path.
# Idempotent and quiet; run after the venv exists (scripts/setup-python.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

PYCRIU_DIR=${P4CF_PYCRIU_DIR:-/usr/local/lib/p4cf/python}
venv_py="$root/.venv/bin/python"

[ -x "$venv_py" ] || p4cf_die "no venv at $root/.venv: run scripts/setup-python.sh (make python) first"
[ -f "$PYCRIU_DIR/pycriu/__init__.py" ] || p4cf_die "pycriu not found in $PYCRIU_DIR: run scripts/setup-criu.sh (make criu) first"

site=$("$venv_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pth="$site/p4cf-pycriu.pth"
if [ ! -f "$pth" ] || [ "$(cat "$pth")" != "$PYCRIU_DIR" ]; then
    printf '%s\n' "$PYCRIU_DIR" > "$pth"
fi
# Check it imports with the venv's protobuf; say which half is wrong if not.
"$venv_py" -c 'import pycriu, pycriu.images' 2>/dev/null \
    || p4cf_die "pycriu in $PYCRIU_DIR does not import in $root/.venv (protobuf $("$venv_py" -c 'import google.protobuf as p; print(p.__version__)' 2>/dev/null || echo missing)); run: $venv_py -c 'import pycriu.images'"
