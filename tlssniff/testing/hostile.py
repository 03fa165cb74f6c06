"""Hostile captures: hellos whose names are written to attack whoever looks at the output.

A real TLS stack refuses to send most of these names (OpenSSL and Python's ssl reject an SNI
with a NUL, a control byte or 65 KB), but an attacker on a monitored link writes the bytes
directly: so the ClientHellos and ServerHellos here are built byte by byte (RFC 5246 / RFC
6066 / RFC 7301 layouts) and put into TCP connections by :mod:`tlssniff.testing.pcapwriter`.

Each value of :data:`VALUES` is sent, in its own connections, as

* the SNI (server_name, host_name) of the ClientHello,
* the ALPN list the client offers (the value, cut to the 255 bytes an ALPN name can hold,
  and ``h2``) and the ALPN name the ServerHello selects (the same value),

in TLS 1.2 connections where the client presents a session ticket and the server answers with
a full handshake (ServerHello, Certificate, ServerHelloDone): every connection is an offer
refused, so findings fire and quote the server names. Long hellos are split across records,
as a real stack does.

``python scripts/make_hostile_captures.py`` writes ``captures/hostile/hostile.pcap`` and
``truth.jsonl``: per connection the value's name, what the client sent and the server
answered (the SNI and ALPN as tlssniff must report them: one character per byte, bytes above
0x7f as U+FFFD), the version, the offer and the full handshake. The same seed gives the same
bytes.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

from tlssniff.testing.pcapwriter import Endpoint, tcp_frames, write_pcap

# name -> the bytes an attacker puts on the wire. Names say what each one tries.
VALUES: dict[str, bytes] = {
    "osc_title": b"\x1b]0;owned\x07title.example",  # sets the terminal window title
    "clear_screen": b"\x1b[2J\x1b[Hclear.example",  # clears the screen, cursor home
    "osc8_link": b"\x1b]8;;http://attacker.example/\x1b\\click\x1b]8;;\x1b\\",  # a link
    "sgr_bold": b"\x1b[1mbold.example\x1b[0m",
    "markup_close": b"evil[/]",  # a rich MarkupError when read as markup
    "markup_style": b"[bold red]alarm[/bold red]",
    "markup_link": b"[link=file:///etc/passwd]x[/link]",
    "emoji": b":warning::skull:",
    "html": b"<img src=x onerror=alert(1)>",
    "md_link": b"[text](http://x)",
    "md_heading": b"\r\n# heading\r\n",
    "md_table": b"a|b|c` **bold**",
    "formula_eq": b"=cmd|' /C calc'!A0",
    "formula_plus": b"+1",
    "formula_minus": b"-1",
    "formula_at": b"@SUM(1+1)",
    "formula_tab": b"\t=1",
    "nul": b"a\x00b.example",
    "del_bs": b"a\x7f\x08b.example",
    "backslash": b"\\x1b.example",  # a literal backslash-x: must not look like an escaped ESC
    "non_utf8": b"\xff\xfe\xc3\x28\xe2\x80\xaeexe.gpj",  # invalid UTF-8, a bidi override's bytes
    "dollar_math": b"$x^2$ and $y",  # mathtext in chart labels
    "long_64k": b"a" * 64000,  # the hello stays under the 64 KiB message limit
    "long_non_ascii": b"\xe9" * 22000,  # 66 KB once each byte is U+FFFD in UTF-8
}

SERVER = "192.0.2.10"
CLIENT = "198.51.100.7"
PER_VALUE = 2  # connections per value (findings need more than one offer)
_CIPHER = 0xC02F  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
_RECORD = 16384


def _vec(n: int, data: bytes) -> bytes:
    return len(data).to_bytes(n, "big") + data


def _ext(etype: int, body: bytes) -> bytes:
    return struct.pack("!HH", etype, len(body)) + body


def _handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def _records(ctype: int, data: bytes) -> bytes:
    """``data`` in TLS 1.2 records of at most 16384 bytes (a long hello spans several)."""
    out = b""
    for off in range(0, len(data), _RECORD):
        chunk = data[off:off + _RECORD]
        out += struct.pack("!BHH", ctype, 0x0303, len(chunk)) + chunk
    return out


def alpn_name(value: bytes) -> bytes:
    """The value as an ALPN protocol name (1 to 255 bytes)."""
    return value[:255] or b"x"


def client_hello(sni: bytes, alpn: list[bytes], ticket: bytes, rng: random.Random) -> bytes:
    exts = b"".join([
        _ext(0, _vec(2, b"\x00" + _vec(2, sni))),  # server_name: host_name
        _ext(10, _vec(2, b"\x00\x1d\x00\x17")),  # supported_groups
        _ext(11, _vec(1, b"\x00")),  # ec_point_formats
        _ext(13, _vec(2, b"\x04\x01\x05\x01\x08\x04")),  # signature_algorithms
        _ext(16, _vec(2, b"".join(_vec(1, p) for p in alpn))),  # ALPN
        _ext(35, ticket),  # session_ticket: a ticket presented
    ])
    body = (b"\x03\x03" + rng.randbytes(32) + _vec(1, rng.randbytes(32))
            + _vec(2, struct.pack("!HH", _CIPHER, 0x009C)) + _vec(1, b"\x00") + _vec(2, exts))
    return _records(22, _handshake(1, body))


def server_flight(alpn: bytes, rng: random.Random) -> bytes:
    """ServerHello selecting ``alpn`` (no session_ticket extension: no ticket will come),
    Certificate, ServerHelloDone: a full handshake."""
    exts = _ext(16, _vec(2, _vec(1, alpn))) + _ext(0xFF01, b"\x00")
    sh = (b"\x03\x03" + rng.randbytes(32) + _vec(1, rng.randbytes(32))
          + struct.pack("!HB", _CIPHER, 0) + _vec(2, exts))
    cert = _vec(3, _vec(3, b"\x30\x03\x02\x01\x00"))  # one (not really DER) certificate
    msgs = _handshake(2, sh) + _handshake(11, cert) + _handshake(14, b"")
    return _records(22, msgs)


def displayed(value: bytes) -> str:
    """How tlssniff decodes a name from the wire (and must report it in JSON)."""
    return value.decode("ascii", "replace")


def build(seed: int = 13) -> tuple[list[list[tuple[float, bytes]]], list[dict]]:
    """The connections (frames) and their truth, deterministic for ``seed``."""
    rng = random.Random(seed)
    conversations = []
    truth = []
    t = 1_700_000_000.0
    port = 40000
    for name, value in VALUES.items():
        for _i in range(PER_VALUE):
            port += 1
            ticket = rng.randbytes(160)
            alpn = alpn_name(value)
            chunks = [("c", client_hello(value, [alpn, b"h2"], ticket, rng)),
                      ("s", server_flight(alpn, rng))]
            client, server = Endpoint(CLIENT, port), Endpoint(SERVER, 443)
            conversations.append(tcp_frames(chunks, client, server, start=t, rng=rng))
            truth.append({
                "name": name, "client": str(client), "server": str(server),
                "sni": displayed(value), "alpn": displayed(alpn),
                "alpn_offered": [displayed(alpn), "h2"], "version": "TLSv1.2",
                "offered": "ticket", "handshake": "full", "resumed": False,
            })
            t += 1.0
    return conversations, truth


def write(folder: str | Path, seed: int = 13) -> tuple[Path, Path]:
    """Write ``hostile.pcap`` and ``truth.jsonl`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    conversations, truth = build(seed)
    pcap, truth_file = out / "hostile.pcap", out / "truth.jsonl"
    write_pcap(pcap, conversations)
    with open(truth_file, "w", encoding="utf-8") as f:
        for t in truth:
            f.write(json.dumps(t, ensure_ascii=True) + "\n")
    return pcap, truth_file


if __name__ == "__main__":
    for p in write(sys.argv[1] if len(sys.argv) > 1 else "captures/hostile"):
        print(p)
