"""bench/live_load.py --replay: a real load recorded with tcpdump, replayed with tcpreplay onto a
second veth pair while ``tlssniff live --workers 2`` captures, judged against the clients'
records. A small load (the figures are the bench's business): the script's verdict comparison
and its exit status are what is tested, including that both fail when they should."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "bench" / "live_load.py"
_TOOLS = ("ip", "nginx", "openssl", "ss", "tcpdump", "tcpreplay")
_missing = [t for t in _TOOLS if shutil.which(t) is None and not os.access(f"/usr/sbin/{t}", os.X_OK)]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, capture)"),
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {' '.join(_missing)}"),
]


def _run(*args: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """One recorded load, replayed at 2x: (exit status, output, the kept work directory)."""
    # 2x of 40 handshakes/s and 2 MB/s is asked as 60/s and 3 MB/s: a margin for a busy machine
    code, out = _run("--seconds", "4", "--rate", "40", "--bulk", "2", "--workers", "2",
                     "--replay", "2", "--min-rate", "60", "--min-mbps", "3", "--keep", "--",
                     "--workers", "2")
    kept = re.search(r"files kept in (\S+)", out)
    assert kept, out
    yield code, out, kept[1]
    shutil.rmtree(kept[1], ignore_errors=True)


def test_replay_classifies_every_connection_as_its_client(recording):
    code, out, work = recording
    records = sum(len(json.loads(p.read_text())["records"])
                  for p in [*Path(work).glob("hs*.json"), Path(work) / "bulk.json"])
    assert records > 100
    assert re.search(r"tcpdump: 0 dropped by the kernel", out), out
    assert f"offline:   tlssniff analyze on the recording: {records} of {records} agree" in out, out
    assert re.search(r"replay: .* 0 failed", out), out
    assert re.search(r"kernel: \d+ received, 0 dropped", out), out
    assert (f"tlssniff reported {records}: {records} agree, 0 missing, 0 unknown, 0 disagree, "
            f"0 extra") in out, out
    assert re.search(r"parent [\d.]+ s; worker 1 [\d.]+ s; worker 2 [\d.]+ s", out), out
    assert re.search(r"against the 60/s and 3 MB/s asked: reached", out), out
    assert "result:    PASS" in out and code == 0, out


def test_a_client_record_tlssniff_contradicts_fails_the_run(recording, tmp_path):
    _, _, work = recording
    src = tmp_path / "rec"
    shutil.copytree(work, src)
    hs0 = src / "hs0.json"
    doc = json.loads(hs0.read_text())
    flipped = next(r for r in doc["records"] if r["reused"])
    flipped["reused"] = False  # the client now says "full": tlssniff saw a resumption
    hs0.write_text(json.dumps(doc))
    code, out = _run("--replay", "2", "--replay-from", str(src), "--", "--workers", "2")
    assert re.search(r"\d+ agree, 0 missing, 0 unknown, 1 disagree, 0 extra", out), out
    assert f"disagrees: client {flipped}" in out, out
    assert "result:    FAIL" in out and code == 1, out


def test_a_replay_short_of_the_rate_asked_fails_the_run(recording):
    _, _, work = recording
    code, out = _run("--replay", "2", "--replay-from", work, "--min-rate", "100000", "--",
                     "--workers", "2")
    assert re.search(r"\d+ agree, 0 missing, 0 unknown, 0 disagree, 0 extra", out), out
    assert "against the 100000/s and 4 MB/s asked: NOT reached" in out, out
    assert "result:    FAIL" in out and code == 1, out
