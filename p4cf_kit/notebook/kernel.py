"""The notebooks' Python kernel: IPython's own, except that it reports no Python patch version.

Why: JupyterLab writes the kernel's `language_info` into a notebook as it opens it. With the
interpreter's version in it (3.11.2 on one machine, 3.11.7 on another) every committed notebook
opened with unsaved changes before anything ran. The notebooks carry this kernel's
language_info, so they open clean on any machine. `python -m p4cf_kit.notebook.kernel --install`
(run by scripts/setup-python.sh) makes it the venv's `python3` kernelspec, keeping the rest of
ipykernel's spec as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ipykernel.ipkernel import IPythonKernel

#: What the kernel tells JupyterLab about its language; the committed notebooks hold exactly this.
LANGUAGE_INFO: dict[str, Any] = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
KERNEL_NAME = "python3"


class Kernel(IPythonKernel):
    """IPythonKernel with a machine-independent language_info."""

    language_info = LANGUAGE_INFO


def kernelspec_path(prefix: str = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME / "kernel.json"


def install(prefix: str = sys.prefix) -> bool:
    """Point the `python3` kernelspec of this environment at this module; True when it changed."""
    from ipykernel.kernelspec import get_kernel_dict
    path = kernelspec_path(prefix)
    spec = json.loads(path.read_text()) if path.exists() else get_kernel_dict()
    argv = ["python", "-m", __name__ if __name__ != "__main__" else "p4cf_kit.notebook.kernel", "-f",
            "{connection_file}"]
    if spec.get("argv") == argv:
        return False
    spec["argv"] = argv
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return True


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        print(f"{'installed' if install() else 'kept'} {kernelspec_path()}")
    else:
        from ipykernel.kernelapp import IPKernelApp
        IPKernelApp.launch_instance(kernel_class=Kernel)
