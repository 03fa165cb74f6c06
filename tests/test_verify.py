"""`tlssniff verify`: Wireshark's dissector agrees with tlssniff on every test capture, and a
planted contradiction is found and reported with exit status 4."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from tests.conftest import CAPTURES, PUBLIC, analyze_jsonl, run_tlssniff
from tlssniff.verify import TsharkMissing, compare, dissect, verify_captures

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

# The captures this project made (the public ones, now in captures/public too, are sampled below:
# many carry UDP transports or preambles tshark's TLS fields do not cover).
OURS = sorted(p for p in CAPTURES.rglob("*.pcap*") if p.is_file() and PUBLIC not in p.parents)
ZEEK = PUBLIC / "zeek" / "tls"
# A sample of the public captures: TLS 1.0-1.3, drafts, PSK, HRR, 0-RTT, STARTTLS, SSLv2.
PUBLIC_SAMPLE = [ZEEK / n for n in (
    "tls1.2.pcap", "tls13_psk_succesfull.pcap", "hrr.pcap", "tls-13draft19-early-data.pcap",
    "chrome-63.0.3211.0-canary-tls_experiment.pcap", "tls1_1.pcap", "ssl.v3.pcap",
    "smtp-starttls.pcap", "tls-fragmented-handshake.pcap", "ssl-v2.pcap",
    "tls13draft23-chrome67.0.3368.0-canary.pcap", "google-duplicate.pcap",
)]


@pytest.mark.parametrize("path", OURS, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_agrees_on_our_captures(path):
    r = verify_captures([str(path)])
    assert r.agree, [c.to_dict() for c in r.contradictions]
    if path.parent.name != "quic":
        assert r.compared > 0


@pytest.mark.parametrize("path", PUBLIC_SAMPLE, ids=lambda p: p.name)
def test_agrees_on_public_captures(path):
    if not path.exists():
        pytest.skip("public captures not present")
    r = verify_captures([str(path)])
    assert r.agree, [c.to_dict() for c in r.contradictions]


def test_cli_agrees_exit_0():
    proc = run_tlssniff("verify", str(CAPTURES / "openssl-tls13.pcap"))
    assert "agrees with every verdict" in proc.stdout


def _planted(tmp_path, path, change):
    records = analyze_jsonl(path)
    i, field, value = change(records)
    records[i][field] = value
    f = tmp_path / "planted.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records[i], f


@pytest.mark.parametrize("field,pick,value", [
    ("handshake", lambda r: r["handshake"] == "psk", "full"),  # tshark: pre_shared_key in SH
    ("handshake", lambda r: r["handshake"] == "full" and r["version"] == "TLSv1.3", "psk"),
    ("handshake", lambda r: r["handshake"] == "session_id", "full"),  # TLS 1.2: CCS after SH
    ("handshake", lambda r: r["handshake"] == "full" and r["version"] == "TLSv1.2", "ticket"),
    ("sni", lambda r: r["sni"], "evil.example"),
    ("version", lambda r: r["version"] == "TLSv1.3", "TLSv1.2"),
    ("offered", lambda r: r["offered"] == "psk", "none"),  # an offer tlssniff "missed"
])
def test_planted_contradiction_is_reported(tmp_path, field, pick, value):
    path = CAPTURES / "demo.pcapng"

    def change(records):
        return next(i for i, r in enumerate(records) if pick(r)), field, value

    rec, f = _planted(tmp_path, path, change)
    proc = run_tlssniff("verify", str(path), "--verdicts", str(f), "-f", "json", check=False)
    assert proc.returncode == 4, proc.stderr
    doc = json.loads(proc.stdout)
    bad = doc["contradictions"]
    assert bad and not doc["agree"]
    assert {(c["client"], c["server"], c["field"]) for c in bad} == {
        (rec["client"], rec["server"], field)}, bad
    assert bad[0]["tlssniff"] == value and bad[0]["frames"]


def test_missing_connection_is_reported(tmp_path):
    path = CAPTURES / "openssl-tls12.pcap"
    records = analyze_jsonl(path)
    dropped = records.pop(3)
    f = tmp_path / "v.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    proc = run_tlssniff("verify", str(path), "--verdicts", str(f), check=False)
    assert proc.returncode == 4
    assert dropped["client"] in proc.stdout and "connection" in proc.stdout


def test_compare_directly():
    path = str(CAPTURES / "openssl-tls12.pcap")
    streams = dissect(path)
    records = analyze_jsonl(path)
    assert compare(streams, records)[2] == []
    records[0]["offered"] = "ticket" if records[0]["offered"] != "ticket" else "none"
    assert [c.field for c in compare(streams, records)[2]] == ["offered"]


def test_tshark_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.raises(TsharkMissing, match="tshark is not installed"):
        dissect(str(CAPTURES / "openssl-tls12.pcap"))
    from tlssniff.verify import verify_verdicts

    r = verify_verdicts([str(CAPTURES / "openssl-tls12.pcap")], [])
    assert not r.agree and "not installed" in r.summary()


def test_cli_without_tshark_says_so(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no tshark on this PATH
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "tlssniff", "verify",
                           str(CAPTURES / "openssl-tls12.pcap")], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2
    assert "tshark is not installed" in proc.stderr


def test_a_capture_cut_mid_packet_is_compared_up_to_the_cut(tmp_path):
    """tshark exits 2 on a file cut mid-packet (found by the whole-CLI fuzz): what it read
    before the cut is compared, as tlssniff analyzes it, with no traceback at exit."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((CAPTURES / "openssl-tls12.pcap").read_bytes()[:3000])
    proc = run_tlssniff("verify", str(cut), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "1 connections compared" in proc.stdout and "agrees" in proc.stdout
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
