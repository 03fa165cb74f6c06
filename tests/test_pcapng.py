"""capture/pcapng.py, the one pcapng writer (live --write, evidence.pcapng, probe --write):
what it writes reads back frame for frame in tlssniff's reader, dpkt's and tshark's, comments
included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dpkt
import pytest

from tlssniff.capture.files import open_capture
from tlssniff.capture.pcapng import MAX_COMMENT, PcapngWriter, comment_bytes
from tlssniff.probe.selfcheck import keep

REPO = Path(__file__).resolve().parent.parent


def _frames(path: Path) -> list[tuple[float, int, bytes]]:
    with open_capture(path) as cap:
        return [(round(t, 6), lt, fr) for t, lt, fr in cap.frames()]


def test_two_link_types_and_comments_read_back(tmp_path: Path):
    eth = _frames(REPO / "captures" / "nginx.pcap")[:5]
    out = tmp_path / "mixed.pcapng"
    with open(out, "wb") as f:
        w = PcapngWriter(f, application="report")
        for i, (ts, lt, fr) in enumerate(eth):
            w.write(ts, fr, w.interface_for(lt), comment=f"frame {i} ü\0end")
        raw = w.interface_for(101)  # LINKTYPE_RAW: a second interface
        assert raw == 1 and w.interface_for(eth[0][1]) == 0
        w.write(eth[0][0] + 1, eth[0][2][14:], raw)
        w.close()
    back = _frames(out)
    assert back[:5] == eth
    assert back[5] == (round(eth[0][0] + 1, 6), 101, eth[0][2][14:])
    with open(out, "rb") as f:
        assert [bytes(buf) for _, buf in dpkt.pcapng.Reader(f)][:5] == [fr for _, _, fr in eth]
    tshark = shutil.which("tshark")
    assert tshark, "tshark is a test requirement (scripts/install-system-deps.sh)"
    comments = subprocess.run([tshark, "-r", str(out), "-T", "fields", "-e", "frame.comment"],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    assert comments.splitlines()[:5] == [f"frame {i} ü\\x00end" for i in range(5)]
    assert comments.splitlines()[5] == ""


def test_comment_bytes_bounded_on_a_character():
    long = "é" * MAX_COMMENT
    data = comment_bytes(long)
    assert len(data) <= MAX_COMMENT
    assert data.decode("utf-8").endswith(f"... ({2 * MAX_COMMENT} bytes)")


@pytest.mark.parametrize("name", ["nginx.pcap", "openssl-tls12.pcap"])
def test_probe_keep_converts_pcap_to_pcapng(tmp_path: Path, name: str):
    src = REPO / "captures" / name
    dest = tmp_path / "kept.pcapng"
    assert keep(src, dest) == str(dest)
    assert dest.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    assert _frames(dest) == _frames(src)
    with open_capture(src) as cap:
        list(cap.frames())
        snaplen = cap.snaplen
    with open(dest, "rb") as f:
        assert dpkt.pcapng.Reader(f).snaplen == snaplen
    assert (dest.stat().st_mode & 0o777) == 0o600
