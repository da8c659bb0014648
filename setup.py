"""Build hook for the embedded switch's compiled parts (everything else is in pyproject.toml):
the C fast path, the kernel fast path's eBPF program (clang's BPF target) and its libbpf
loader. All optional: without a compiler, clang or libbpf-dev the kit still installs, the data
plane runs the paths it has, and `p4cf doctor` names what is missing."""

import os
import shutil
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EMBEDDED = "p4cf_kit/switch/embedded"
BPF_SOURCE = f"{EMBEDDED}/ebpf/forward.bpf.c"
BPF_OBJECT = f"{EMBEDDED}/ebpf/forward.bpf.o"
C_FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-missing-field-initializers"]


class BuildExtAndBpf(build_ext):
    """build_ext, then the eBPF object: `clang -O2 -g -target bpf` (-g: BTF with line info, so
    a verifier refusal names source lines). Written beside the loader, in the build tree and,
    for an editable install, in the source tree."""

    def run(self) -> None:
        super().run()
        targets = [os.path.join(self.build_lib, BPF_OBJECT)]
        if self.inplace or getattr(self, "editable_mode", False):
            targets.append(BPF_OBJECT)
        clang = shutil.which(os.environ.get("CLANG", "clang"))
        if clang is None:
            print("warning: clang not found: the kernel fast path is not built "
                  "(apt-get install clang libbpf-dev)")
            return
        include = [f"-I/usr/include/{sysconfig.get_config_var('MULTIARCH') or ''}".rstrip("/")]
        os.makedirs(os.path.dirname(targets[0]), exist_ok=True)
        cmd = [clang, "-O2", "-g", "-Wall", "-target", "bpf", *include, "-c", BPF_SOURCE,
               "-o", targets[0]]
        if subprocess.run(cmd).returncode != 0:
            print("warning: the kernel fast path's eBPF program did not compile (see above)")
            return
        for target in targets[1:]:
            shutil.copyfile(targets[0], target)


setup(
    cmdclass={"build_ext": BuildExtAndBpf},
    ext_modules=[
        Extension(
            "p4cf_kit.switch.embedded._fastpath",
            sources=[f"{EMBEDDED}/_fastpath.c"],
            depends=[f"{EMBEDDED}/layout.h", f"{EMBEDDED}/pybuffer.h"],
            extra_compile_args=C_FLAGS,
            optional=True,
        ),
        Extension(
            "p4cf_kit.switch.embedded.ebpf._loader",
            sources=[f"{EMBEDDED}/ebpf/_loader.c"],
            depends=[f"{EMBEDDED}/layout.h", f"{EMBEDDED}/pybuffer.h"],
            libraries=["bpf"],
            extra_compile_args=C_FLAGS,
            optional=True,
        ),
    ],
)
