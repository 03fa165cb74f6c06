"""The compiled hot path (setup.py, mypyc): in use when built, the same answers as the sources,
and never silently stale. Also holds the JSONL line writer to ``json.dumps(to_dict())``."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CAPTURES, PUBLIC, REPO
from tlssniff import _native
from tlssniff.engine.pipeline import analyze_paths
from tlssniff.analysis.verdict import ConnectionVerdict, EarlyData, Handshake, Note, Offered

COMPILED = bool(_native.built())

# Captures covering every transport and verdict kind: TCP TLS 1.2/1.3, STARTTLS, QUIC, DTLS,
# link types and tunnels of the public corpus, damaged files.
PARITY_CAPTURES = sorted(
    [str(p) for p in CAPTURES.glob("*.pcap*")]
    + [str(p) for p in (CAPTURES / "diagnostics").glob("*.pcap")]
    + [str(p) for p in (CAPTURES / "quic").glob("*.pcap*")]
    + [str(p) for p in (CAPTURES / "starttls").glob("*.pcap*")]
    + [str(p) for p in PUBLIC.rglob("*.pcap*") if "_baseline" not in p.parts]
)


def _compact(v: ConnectionVerdict) -> str:
    return json.dumps(v.to_dict(), separators=(",", ":")) + "\n"


def test_json_line_is_the_dict_encoded() -> None:
    """Every verdict of every parity capture: the direct line equals the encoded dict."""
    verdicts: list[ConnectionVerdict] = []
    for path in PARITY_CAPTURES:
        try:
            analyze_paths([path], verdicts.append)
        except Exception as err:  # a damaged corpus file is reported by the CLI, not here
            if "Capture" not in type(err).__name__:
                raise
    assert len(verdicts) > 300
    for v in verdicts:
        assert v.to_json_line() == _compact(v), v


@pytest.mark.parametrize(
    "ts",
    [0.0, 1e-06, 5.5e-05, 0.0001, 0.5, 12.000001, 1700000000.002972, 1700000000.0,
     1795317827.693028, 8589934591.999999, 8589934592.5, 1e17, -1.5, 123.4567894],
)
def test_json_line_odd_values(ts: float) -> None:
    v = ConnectionVerdict(
        ts=ts, client="[fd00::1]:443", server="10.0.0.1:8443", sni='a"b\\c\x00\u2028é\U0001f600',
        alpn_offered=["h2", 'x"y', "\x7f"], offered=Offered.TICKET, handshake=Handshake.TICKET,
        early_data=EarlyData.REJECTED, note=Note.GAP, ticket_lifetime=7200, frames=[1, 22],
        client_hello_ts=ts, server_hello_ts=None, handshake_end_ts=ts + 1,
    )
    assert v.to_json_line() == _compact(v)
    assert json.loads(v.to_json_line())["ts"] == v.to_dict()["ts"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(min_value=-1e10, max_value=1e10, allow_nan=False),
                          st.integers(min_value=0, max_value=2**34).map(lambda us: us / 1e6),
                          st.floats(min_value=1.7e9, max_value=1.7e9 + 3)),
                min_size=1, max_size=12),
       st.sampled_from(["example.com", 'a"b', "\x01", "é"]))
def test_json_line_in_sequence(stamps: list[float], sni: str) -> None:
    """Lines one after another, as a capture writes them: the second of the last timestamp
    and the text of SNI and ALPN values are kept between lines (verdict.py) and must never
    leak into the next line."""
    for ts in stamps:
        v = ConnectionVerdict(ts=ts, client="10.0.0.2:50000", server="10.0.0.1:443", sni=sni,
                              alpn="h2", alpn_offered=["h2", sni], client_hello_ts=ts,
                              server_hello_ts=ts + 0.25, handshake_end_ts=-ts)
        assert v.to_json_line() == _compact(v)


def test_stale_compiled_module_refused(tmp_path: Path) -> None:
    """A compiled module whose source changed since the build stops the import, with a message
    that says what to run."""
    pkg = tmp_path / "tlssniff"
    pkg.mkdir()
    shutil.copy(REPO / "tlssniff" / "__init__.py", pkg)
    shutil.copy(REPO / "tlssniff" / "_native.py", pkg)
    (pkg / "hot.py").write_text("X = 1\n")
    (pkg / ("hot" + EXTENSION_SUFFIXES[0])).write_bytes(b"")  # never imported here
    digest = hashlib.sha256(b"X = 1\n").hexdigest()
    (pkg / "_native.json").write_text(json.dumps({"tlssniff/hot.py": digest}))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def import_it() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", "import tlssniff"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    assert import_it().returncode == 0
    (pkg / "hot.py").write_text("X = 2\n")
    proc = import_it()
    assert proc.returncode != 0
    assert "compiled modules are older than their sources (tlssniff/hot.py)" in proc.stderr
    assert "make compile" in proc.stderr


@pytest.mark.skipif(not COMPILED, reason="pure-Python build (make compile builds the other)")
def test_compiled_modules_are_the_ones_loaded() -> None:
    names = [src[: -len(".py")].replace("/", ".") for src in _native.built()]
    for name in names:
        importlib.import_module(name)
    loaded = set(_native.compiled_modules())
    assert set(names) <= loaded


@pytest.mark.skipif(not COMPILED, reason="pure-Python build (make compile builds the other)")
def test_pure_and_compiled_give_the_same_output(tmp_path: Path) -> None:
    """The sources run as plain Python and the compiled build agree byte for byte."""
    pure = tmp_path / "pure"
    shutil.copytree(REPO / "tlssniff", pure / "tlssniff",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "_native.json", "__pycache__"))
    outputs = []
    for root in (pure, REPO):
        proc = subprocess.run(
            [sys.executable, "-m", "tlssniff", "analyze", *PARITY_CAPTURES, "-f", "jsonl", "-q"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True, text=True, timeout=600,
        )
        outputs.append(proc.stdout)
    assert outputs[0].count("\n") > 300
    assert outputs[0] == outputs[1]


def test_verdicts_pickle_by_their_fields() -> None:
    """``--jobs`` workers send verdicts to the parent pickled."""
    import pickle

    v = ConnectionVerdict(ts=1.5, client="10.0.0.2:5000", server="10.0.0.1:443",
                          handshake=Handshake.PSK, frames=[3, 4], client_hello_ts=2.0)
    assert pickle.loads(pickle.dumps(v)) == v
