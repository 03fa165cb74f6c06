"""Every TCP TLS connection in the public captures gets the documented verdict.

The expected answers (tests/data/public_truth.json) were derived from the captures themselves,
the RFCs and Zeek's published baselines, independently of tlssniff (tests/data/PUBLIC_TRUTH.md).
TLS after a plaintext phase is included: STARTTLS (``starttls``) and the proxies, RDP and
banners of preamble.py (``preamble``). ``not_analyzed`` lists TLS that tlssniff does
not read (none left); such connections must not be reported at all: counted, never misclassified.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import PUBLIC, REPO, analyze_jsonl, assert_verdicts

TRUTH = json.loads((REPO / "tests" / "data" / "public_truth.json").read_text())
FILES = sorted(name for name, entry in TRUTH.items() if entry["tls"] or entry["not_analyzed"])



@pytest.mark.parametrize("name", FILES)
def test_public_capture(name):
    entry = TRUTH[name]
    records = analyze_jsonl(PUBLIC / name)
    assert_verdicts(records, entry["tls"])


def test_truth_covers_every_public_capture():
    on_disk = {
        str(p.relative_to(PUBLIC)) for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng")
    }
    assert on_disk == set(TRUTH)
