"""Helpers shared by the report tests: write a bundle with the real CLI and check it with
`tlssniff verify` on its own evidence.pcapng; read pcapng blocks; hand-built ClientHellos."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from tests.conftest import run_tlssniff


def verify_evidence(out: Path) -> None:
    """`tlssniff verify` on the bundle's evidence.pcapng: tshark agrees (exit 0)."""
    if shutil.which("tshark") is None:
        return
    proc = run_tlssniff("verify", str(out / "evidence.pcapng"), check=False)
    assert proc.returncode == 0, (out, proc.stdout, proc.stderr)
    assert "agrees with every verdict" in proc.stdout, proc.stdout


def make_bundle(out: Path, *args: str, check: bool = True, verify: bool = True):
    """`tlssniff report ARGS -o OUT`, then verify on the bundle's evidence (when it worked)."""
    proc = run_tlssniff("report", *args, "-o", str(out), check=check)
    if verify and proc.returncode in (0, 3):
        verify_evidence(out)
    return proc


def pcapng_packets(path: Path) -> list[tuple[bytes, list[bytes]]]:
    """(frame bytes, comment options) of every Enhanced Packet Block of a little-endian
    pcapng file, as a reader would see them (so a search does not straddle block fields)."""
    data = path.read_bytes()
    out = []
    off = 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, off)
        assert blen >= 12 and off + blen <= len(data), "bad block"
        if btype == 6:
            caplen = struct.unpack_from("<I", data, off + 20)[0]
            frame = data[off + 28: off + 28 + caplen]
            opt = off + 28 + caplen + (-caplen % 4)
            comments = []
            while opt + 4 <= off + blen - 4:
                code, olen = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code == 1:
                    comments.append(data[opt + 4: opt + 4 + olen])
                opt += 4 + olen + (-olen % 4)
            out.append((frame, comments))
        off += blen
    return out


def client_hello(sni: bytes) -> bytes:
    """A TLS 1.2 ClientHello carrying ``sni`` (any bytes, any length up to 65 KB), split into
    records of at most 16 KB as a real client would."""
    ext = struct.pack("!HH", 0, len(sni) + 5) + struct.pack("!HBH", len(sni) + 3, 0, len(sni)) \
        + sni
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    out = b""
    for i in range(0, len(msg), 16384):
        part = msg[i:i + 16384]
        out += b"\x16\x03\x01" + struct.pack("!H", len(part)) + part
    return out
