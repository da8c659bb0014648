"""Build hook for the optional C fast path of the embedded switch (everything else is in
pyproject.toml). `optional=True`: without a compiler the kit still installs and the data
plane runs its pure-Python path."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "p4cf_kit.switch.embedded._fastpath",
            sources=["p4cf_kit/switch/embedded/_fastpath.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
