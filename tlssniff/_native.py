"""Which modules run compiled (mypyc, see setup.py), and the guard against stale ones.

Python imports a compiled extension in preference to the ``.py`` beside it, so after an edit
an in-place build would go on running the old code without a word. ``setup.py`` records the
SHA-256 of every source it compiled in ``_native.json``; :func:`check` compares them with the
sources on disk when tlssniff is imported and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.machinery import EXTENSION_SUFFIXES

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_PACKAGE_DIR)
STAMP = os.path.join(_PACKAGE_DIR, "_native.json")


class StaleNativeModules(ImportError):
    pass


def _compiled_path(source: str) -> str | None:
    base = os.path.join(_ROOT, source[: -len(".py")])
    for suffix in EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def built() -> dict[str, str]:
    """Sources (relative to the project root) compiled in place, with their recorded digests."""
    try:
        with open(STAMP, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return {}
    return {src: digest for src, digest in recorded.items() if _compiled_path(src) is not None}


def check() -> None:
    """Raise :class:`StaleNativeModules` when a compiled module's source has changed since."""
    stale = []
    for src, digest in built().items():
        try:
            with open(os.path.join(_ROOT, src), "rb") as f:
                current = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue  # an installed wheel may ship the extension without its source
        if current != digest:
            stale.append(src)
    if stale:
        raise StaleNativeModules(
            f"tlssniff: the compiled modules are older than their sources ({', '.join(stale)}); "
            "run `make compile` to rebuild them, or `make pure` to run the sources"
        )


def compiled_modules() -> list[str]:
    """Names of the tlssniff modules loaded from compiled extensions (for --version, tests)."""
    import sys

    return sorted(
        name for name, mod in list(sys.modules.items())
        if name.startswith("tlssniff.") and (getattr(mod, "__file__", "") or "").endswith(
            tuple(EXTENSION_SUFFIXES))
    )
