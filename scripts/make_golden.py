"""Rewrite tests/data/golden/: ``analyze -f json`` of every capture in captures/.

    python scripts/make_golden.py

Run it only when a change of findings or figures is intended; the diff is the review.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.golden import GOLDEN, analyze_json, dumps, golden_path, shipped_captures  # noqa: E402


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    wanted = set()
    with tempfile.TemporaryDirectory() as tmp:
        for capture in shipped_captures():
            path = golden_path(capture)
            wanted.add(path)
            path.write_text(dumps(analyze_json(capture, Path(tmp))), encoding="utf-8")
    for stale in set(GOLDEN.glob("*.json")) - wanted:
        stale.unlink()
    print(f"{len(wanted)} golden files in {GOLDEN}")


if __name__ == "__main__":
    main()
