"""``python bench/_without_diagnostics.py ARGS...``: ``tlssniff ARGS`` with the diagnostics
(analysis/diagnostics.py: the findings) replaced by a stub that keeps and finds nothing.

For bench/egress.py --without-diagnostics only: it shows what the outputs cost apart from the
findings (the table, JSON and report compute them; JSONL, CSV and ECS do not).
"""

from __future__ import annotations

import sys



import tlssniff.analysis.diagnostics as diagnostics  # noqa: E402


class NoDiagnostics:
    def add(self, v) -> None:
        pass

    def findings(self) -> list:
        return []

    def to_dict(self) -> dict:
        return {"findings": []}

    def session_ages(self) -> dict:
        return {}


diagnostics.Diagnostics = NoDiagnostics  # type: ignore[misc, assignment]

if __name__ == "__main__":
    from tlssniff.cli import main

    sys.argv[0] = "tlssniff"
    main()
