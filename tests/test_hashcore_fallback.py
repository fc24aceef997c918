"""Without the C extension, stratum.hashcore falls back to hashlib and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Block the extension's import the way a missing build does, then use the public API.
SCRIPT = r"""
import importlib.abc, logging, sys
class NoExtension(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "stratum._hashcore":
            raise ImportError("simulated: extension not built")
        return None
sys.meta_path.insert(0, NoExtension())
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from stratum import hashcore
header = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c")
print(hashcore.backend(), hashcore.c_impl is None, hashcore.sha256d(header)[::-1].hex())
"""


def test_missing_extension_falls_back_to_hashlib_with_a_warning():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        "hashlib",
        "True",
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    ]
    assert "WARNING" in out.stderr and "hashlib fallback" in out.stderr


def test_built_extension_is_the_one_in_use():
    from stratum import hashcore

    assert hashcore.c_impl is not None, "the C extension must be built (scripts/bootstrap.sh)"
    assert hashcore.backend() in {"sha-ni", "armv8-ce", "portable-c"}
