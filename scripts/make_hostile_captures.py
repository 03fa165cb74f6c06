#!/usr/bin/env python3
"""Regenerate captures/hostile/ (hellos carrying hostile names): see tlssniff/testing/hostile.py.

    python scripts/make_hostile_captures.py [OUT_DIR]

Needs no privilege and no network: the hellos are built byte by byte (no TLS stack sends
these names). The output is identical on every run (fixed seed).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.testing.hostile import write  # noqa: E402

if __name__ == "__main__":
    repo = Path(__file__).resolve().parent.parent
    out = sys.argv[1] if len(sys.argv) > 1 else repo / "captures" / "hostile"
    for path in write(out):
        print(path)
