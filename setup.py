"""Build hook: compiles the hot-path modules with mypyc (metadata lives in pyproject.toml).

The modules below are what every packet and every connection goes through (frame walking,
decoding, reassembly, record and hello parsing, classification, output). They stay ordinary,
type-checked Python: mypyc turns the same source into C extensions, about 2.7 times as fast as
the interpreted sources on the handshake benchmark (README, Performance). ``TLSSNIFF_PURE=1`` builds without compiling, and
a build that cannot compile (no C compiler) falls back to the pure-Python modules with a
warning. ``tlssniff/_native.json`` records the sources each compiled module was built from:
``import tlssniff`` refuses compiled modules older than their sources (see tlssniff/_native.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

NATIVE_MODULES = [
    "tlssniff/capture/decode.py",
    "tlssniff/capture/files.py",
    "tlssniff/capture/select.py",
    "tlssniff/flow/reassembly.py",
    "tlssniff/flow/limits.py",
    "tlssniff/flow/eviction.py",
    "tlssniff/flow/table.py",
    "tlssniff/tls/wire.py",
    "tlssniff/tls/records.py",
    "tlssniff/tls/messages.py",
    "tlssniff/tls/handshake.py",
    "tlssniff/tls/ja4.py",
    "tlssniff/tls/ciphers.py",
    "tlssniff/engine/connection.py",
    "tlssniff/analysis/classify.py",
    "tlssniff/engine/pipeline.py",
    "tlssniff/analysis/verdict.py",
    "tlssniff/analysis/aggregate.py",
    "tlssniff/analysis/diagnostics.py",
    "tlssniff/engine/merge.py",
    "tlssniff/engine/fanout.py",
]
STAMP = "tlssniff/_native.json"


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class OptionalBuildExt(build_ext):
    """A failed compile leaves a working pure-Python install instead of no install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as err:  # noqa: BLE001 - any compiler failure means: stay pure
            print(f"warning: tlssniff compiled modules not built ({err}); "
                  "using the pure-Python modules", file=sys.stderr)
            self._forget_native()

    def _forget_native(self) -> None:
        if os.path.exists(STAMP):
            os.remove(STAMP)
        for ext in self.extensions:
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                os.remove(path)


def native_extensions() -> list:
    if os.environ.get("TLSSNIFF_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypyc not installed; using the pure-Python modules", file=sys.stderr)
        return []
    exts = mypycify(
        ["--ignore-missing-imports", *NATIVE_MODULES],
        opt_level="3",
        group_name="tlssniff.native",
    )
    with open(STAMP, "w") as f:
        json.dump({m: _digest(m) for m in NATIVE_MODULES}, f, indent=1, sort_keys=True)
        f.write("\n")
    return exts


setup(ext_modules=native_extensions(), cmdclass={"build_ext": OptionalBuildExt})
