"""Inputs of ``analyze``: capture files, and verdict files written by tlssniff itself.

Sensors run ``tlssniff live eth0 -f jsonl -o node.jsonl``; one central ``tlssniff analyze
node1.jsonl node2.jsonl`` then gives the table and findings of the whole cluster. Inputs are
told apart by content, as pcap is told from pcapng (:func:`sniff`), and each kind of verdict
file has one reader in :data:`READERS` (one registry line per format: a Parquet reader
registers under its ``PAR1`` magic).

Every field of a verdict file is hostile: a line that is not a tlssniff verdict (not JSON, not
an object, a missing field, a wrong type, an out-of-range number, a string that tlssniff would
not have written) is skipped and counted, never trusted; a file without a single verdict is an
unusable input (exit 2). Strings that tlssniff writes unescaped into its own JSON lines
(endpoints, hex, names) must match what tlssniff itself produces.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path
from typing import Callable, Iterator

from tlssniff.analysis.verdict import ConnectionVerdict, EarlyData, Handshake, Note, Offered
from tlssniff.errors import CaptureError, TlssniffError

MAX_LINE = 1 << 20  # bytes: a verdict line is under 4 KiB; longer ones are skipped
_GZIP = b"\x1f\x8b"

# Kinds of input recognised by their first bytes (after gzip): the verdict formats.
MAGIC: list[tuple[bytes, str]] = []
READERS: dict[str, Callable[[str, "Skips"], Iterator[ConnectionVerdict]]] = {}


def register(kind: str, magic: bytes | None,
             reader: Callable[[str, "Skips"], Iterator[ConnectionVerdict]]) -> None:
    """Add a verdict file format: files starting with ``magic`` are read by ``reader(path,
    skips)``, which yields verdicts and counts what it skips in ``skips``."""
    READERS[kind] = reader
    if magic is not None:
        MAGIC.append((magic, kind))


def _head(path: str, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        head = f.read(n)
    if head.startswith(_GZIP):
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(n)
        except (OSError, EOFError):
            return b""  # let the capture reader say what is wrong
    return head


def sniff(path: str) -> str:
    """``"capture"`` (pcap, pcapng, or anything else: the capture reader says what is wrong
    with it) or the kind of verdict file (``"jsonl"``, or a registered one)."""
    head = _head(path)
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b'{"'):
        return "jsonl"
    return "capture"


def split_inputs(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Captures (in the order given) and verdict files with their kind."""
    captures, verdicts = [], []
    for p in paths:
        kind = sniff(str(p))
        if kind == "capture":
            captures.append(p)
        else:
            verdicts.append((p, kind))
    return captures, verdicts


class Skips:
    """Lines of one verdict file that were not verdicts: counted, the first reason kept."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"line {line}: {reason}"


def read_verdict_files(files: list[tuple[Path, str]],
                       on_verdict: Callable[[ConnectionVerdict], None]) -> tuple[int, list[str]]:
    """Feed every verdict of ``files`` to ``on_verdict``; returns (verdicts read, warnings).
    Raises CaptureError for a file holding no verdict at all."""
    total = 0
    warnings = []
    for path, kind in files:
        skips = Skips()
        n = 0
        verdicts = READERS[kind](str(path), skips)
        while True:
            try:
                v = next(verdicts, None)
            except (OSError, EOFError) as err:  # reading only: output errors are the caller's
                raise CaptureError(
                    f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
            if v is None:
                break
            on_verdict(v)
            n += 1
        if not n:
            why = f" ({skips.first})" if skips.first else ""
            raise CaptureError(f"{path}: not a tlssniff verdict file{why}")
        if skips.count:
            warnings.append(f"{path}: {skips.count} lines are not tlssniff verdicts, skipped "
                            f"(first: {skips.first})")
        total += n
    return total, warnings


# -- JSONL ------------------------------------------------------------------------------------

def read_jsonl(path: str, skips: Skips) -> Iterator[ConnectionVerdict]:
    opener = gzip.open if _head_raw(path).startswith(_GZIP) else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        number = 0
        while True:
            raw = f.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # the rest of the overlong line
                    raw = f.readline(MAX_LINE)
                skips.add(number, f"longer than {MAX_LINE} bytes")
                continue
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                skips.add(number, "not JSON")
                continue
            try:
                yield verdict_from_dict(doc)
            except ValueError as err:
                skips.add(number, str(err))


def _head_raw(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(2)


register("jsonl", None, read_jsonl)


# -- Parquet (-f parquet) ---------------------------------------------------------------------

def read_parquet(path: str, skips: Skips) -> Iterator[ConnectionVerdict]:
    """The rows of a ``-f parquet`` table, each checked as a JSONL line is."""
    from tlssniff.output.parquet import read_verdicts

    rows = read_verdicts(path)
    number = 0
    while True:
        try:
            doc = next(rows, None)
        except TlssniffError:
            raise
        except Exception as err:  # pyarrow's errors on a damaged file: unusable input
            raise CaptureError(f"{path}: not a readable Parquet file "
                               f"({type(err).__name__})") from None
        if doc is None:
            return
        number += 1
        try:
            yield verdict_from_dict(doc)
        except ValueError as err:
            skips.add(number, str(err))


register("parquet", b"PAR1", read_parquet)


# -- one verdict, field by field --------------------------------------------------------------

_ENDPOINT = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]{2,45}(?:%[A-Za-z0-9_.-]{1,16})?\]):\d{1,5}\Z")
_HEX = re.compile(r"[0-9a-f]{1,64}\Z")
_WORD = re.compile(r"[A-Za-z0-9_.:()\-]{1,96}\Z")  # versions, ciphers, alerts, JA4, protocols
_TRANSPORTS = frozenset({"tcp", "udp", "quic"})
_ENUMS = {"offered": Offered, "handshake": Handshake, "early_data": EarlyData}
MAX_TEXT = 4096  # SNI, ALPN, capture names
MAX_LIST = 64


def _text(d: dict, name: str, pattern: re.Pattern | None, optional: bool = True) -> str | None:
    x = d.get(name)
    if x is None:
        if optional:
            return None
        raise ValueError(f"{name}: missing")
    if not isinstance(x, str):
        raise ValueError(f"{name}: not a string")
    if len(x) > MAX_TEXT or (pattern is not None and not pattern.match(x)):
        raise ValueError(f"{name}: not a value tlssniff writes")
    return x


def _number(d: dict, name: str, optional: bool = True) -> float | None:
    x = d.get(name)
    if x is None:
        if optional:
            return None
        raise ValueError(f"{name}: missing")
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
            or abs(x) > 1e11:
        raise ValueError(f"{name}: not a timestamp")
    return float(x)


def _int(d: dict, name: str, optional: bool = False, default: int = 0) -> int | None:
    x = d.get(name, None if optional else default)
    if x is None and optional:
        return None
    if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < 1 << 32:
        raise ValueError(f"{name}: not a count")
    return x


def _bool(d: dict, name: str) -> bool:
    x = d.get(name, False)
    if not isinstance(x, bool):
        raise ValueError(f"{name}: not true or false")
    return x


def _enum(d: dict, name: str, enum, default):
    x = d.get(name, default.value if default is not None else None)
    if x is None and default is None:
        return None  # a nullable field (note)
    try:
        return enum(x)
    except (ValueError, TypeError):
        raise ValueError(f"{name}: not one of {', '.join(m.value for m in enum)}") from None


def _strings(d: dict, name: str) -> list[str]:
    x = d.get(name)
    x = [] if x is None else x
    if not isinstance(x, list) or len(x) > MAX_LIST or not all(
            isinstance(s, str) and len(s) <= 255 for s in x):
        raise ValueError(f"{name}: not a list of strings")
    return list(x)


def _frames(d: dict) -> list[int]:
    x = d.get("frames")
    x = [] if x is None else x
    if not isinstance(x, list) or len(x) > 16 or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 63 for n in x):
        raise ValueError("frames: not a list of frame numbers")
    return list(x)


def verdict_from_dict(d: object) -> ConnectionVerdict:
    """One JSONL object (``ConnectionVerdict.to_dict``) back to a verdict; ValueError (one
    line, naming the field) when it is not one tlssniff could have written."""
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    ts = _number(d, "ts", optional=False)
    assert ts is not None
    transport = d.get("transport", "tcp")
    if not isinstance(transport, str) or transport not in _TRANSPORTS:
        raise ValueError("transport: not tcp, udp or quic")
    lifetime = d.get("ticket_lifetime")
    if lifetime is not None and (isinstance(lifetime, bool) or not isinstance(lifetime, int)
                                 or not 0 <= lifetime < 1 << 32):
        raise ValueError("ticket_lifetime: not a number of seconds")
    return ConnectionVerdict(
        ts=ts,
        client=_text(d, "client", _ENDPOINT, optional=False),  # type: ignore[arg-type]
        server=_text(d, "server", _ENDPOINT, optional=False),  # type: ignore[arg-type]
        transport=transport,
        starttls=_text(d, "starttls", _WORD),
        sni=_text(d, "sni", None),
        alpn=_text(d, "alpn", None),
        alpn_offered=_strings(d, "alpn_offered"),
        version=_text(d, "version", _WORD),
        cipher=_text(d, "cipher", _WORD),
        offered=_enum(d, "offered", Offered, Offered.NONE),
        handshake=_enum(d, "handshake", Handshake, Handshake.UNKNOWN),
        hrr=_bool(d, "hrr"),
        early_data=_enum(d, "early_data", EarlyData, EarlyData.NONE),
        established=_bool(d, "established"),
        note=_enum(d, "note", Note, None),
        alert=_text(d, "alert", _WORD),
        session_id=_text(d, "session_id", _HEX),
        ticket_len=_int(d, "ticket_len"),  # type: ignore[arg-type]
        psk_identities=_int(d, "psk_identities"),  # type: ignore[arg-type]
        issued_session_id=_text(d, "issued_session_id", _HEX),
        issued_ticket=_bool(d, "issued_ticket"),
        ticket_lifetime=lifetime,
        frames=_frames(d),
        capture=_text(d, "capture", None),
        ja4=_text(d, "ja4", _WORD),
        ja4_base=_text(d, "ja4_base", _WORD),
        ticket_key_name=_text(d, "ticket_key_name", _HEX),
        ticket_hash=_text(d, "ticket_hash", _HEX),
        psk_identity_hash=_text(d, "psk_identity_hash", _HEX),
        issued_ticket_key_name=_text(d, "issued_ticket_key_name", _HEX),
        issued_ticket_hash=_text(d, "issued_ticket_hash", _HEX),
        client_hello_ts=_number(d, "client_hello_ts"),
        server_hello_ts=_number(d, "server_hello_ts"),
        handshake_end_ts=_number(d, "handshake_end_ts"),
        psk_key_name=_text(d, "psk_key_name", _HEX),
        preamble=_text(d, "preamble", _WORD),
        proxied_client=_text(d, "proxied_client", _ENDPOINT),
    )
