"""Build the C double-SHA256 core (stratum._hashcore).

The SHA-NI and ARMv8 paths are compiled with per-function target attributes, so the
module builds with plain gcc flags and picks the path at run time (CPUID / HWCAP).
If the compiler is missing the build still succeeds without the extension and
stratum.hashcore falls back to hashlib with a warning (optional=True)."""

import os
from pathlib import Path

from setuptools import Extension, setup

extra = ["-O3", "-std=c11", "-Wall", "-Wextra", "-fno-strict-aliasing"]
if os.environ.get("QAZPOOL_ASAN"):
    extra += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]

SOURCE = "stratum/_hashcore.c"

setup(
    ext_modules=[] if not Path(SOURCE).exists() else [
        Extension(
            "stratum._hashcore",
            sources=[SOURCE],
            extra_compile_args=extra,
            extra_link_args=["-fsanitize=address"] if os.environ.get("QAZPOOL_ASAN") else [],
            optional=not os.environ.get("QAZPOOL_REQUIRE_EXT"),
        )
    ]
)
