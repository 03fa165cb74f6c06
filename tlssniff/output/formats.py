"""Machine-readable outputs: JSONL, JSON, CSV and Elastic Common Schema lines, all streamed.

Every format writes a connection when its verdict is made and keeps nothing of it: memory does
not grow with the number of connections. The JSON document is written in that order too: its
head (``tlssniff``, ``captures``), then ``connections`` one per line as they come, then what is
known only at the end (``totals``, ``servers``, ``counters``, ``findings``, ``diagnostics``):
:class:`JsonDocument`.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from typing import IO

from tlssniff import __version__
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.output.display import for_csv

# One encoder for every line: json.dumps(..., separators=...) would build a new one per call.
_encode_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

CSV_FIELDS = (
    "ts", "client", "server", "transport", "sni", "version", "offered", "handshake", "resumed",
    "hrr", "early_data", "established", "alpn", "cipher", "note", "alert", "capture",
    "preamble", "proxied_client",
)


def _split_endpoint(ep: str) -> tuple[str, int]:
    host, _, port = ep.rpartition(":")
    return host.strip("[]"), int(port)


class VerdictWriter:
    """Writes each verdict as it arrives: a JSONL, ECS or CSV line, or a JSON document's
    connection (``json``: ``captures`` names the document's inputs; :meth:`finish` then writes
    its summary). ``header`` False: no CSV header (the lines of a ``--jobs`` worker, whose run
    writes the header once)."""

    def __init__(self, fmt: str, out: IO[str], captures: list[str] | None = None,
                 header: bool = True):
        self.fmt = fmt
        self.out = out
        self._csv = None
        self._doc: JsonDocument | None = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if header:
                self._csv.writeheader()
        elif fmt == "json":
            self._doc = JsonDocument(out, captures or [])

    def finish(self, agg: Aggregator, counters: dict, diagnostics=None) -> None:
        """The end of the output: the JSON document's summary (nothing for line formats)."""
        if self._doc is not None:
            self._doc.finish(agg, counters, diagnostics)

    def write(self, v: ConnectionVerdict) -> None:
        fmt = self.fmt
        if fmt == "jsonl":
            self.out.write(v.to_json_line())
        elif fmt == "ecs":
            self.out.write(_encode_line(to_ecs(v)) + "\n")
        elif fmt == "csv":
            row = v.to_dict()
            assert self._csv is not None
            self._csv.writerow({k: _csv_cell(row[k]) for k in CSV_FIELDS})
        elif fmt == "json":
            assert self._doc is not None
            self._doc.connection(v)


class JsonDocument:
    """``-f json`` written as it is produced: memory holds no connection.

    The document is the one :func:`summary_document` builds, in the order it can be written:
    ``tlssniff``, ``captures``, ``connections`` (one object per line, the JSONL line), then
    ``totals``, ``servers``, ``other_servers`` (when the server bound was reached),
    ``counters``, ``findings``, ``diagnostics`` (indented as ``json.dumps(indent=2)``).
    """

    def __init__(self, out: IO[str], captures: list[str]) -> None:
        self.out = out
        head = json.dumps({"tlssniff": __version__, "captures": captures}, indent=2)
        out.write(head[:-2] + ',\n  "connections": [')
        self._sep = "\n    "

    def connection(self, v: ConnectionVerdict) -> None:
        self.out.write(self._sep + v.to_json_line()[:-1])
        self._sep = ",\n    "

    def finish(self, agg: Aggregator, counters: dict, diagnostics=None) -> None:
        rest = summary_document(agg, counters, [], None, diagnostics)
        del rest["tlssniff"], rest["captures"]
        # Encoded piece by piece (the pieces are small): no whole text of the summary either.
        chunks = json.JSONEncoder(indent=2).iterencode(rest)
        first = next(chunks)  # "{" and the first key's indentation: "{\n  "
        write = self.out.write
        write("\n  ],\n" + first[2:])
        for chunk in chunks:
            write(chunk)
        write("\n")


def _csv_cell(value) -> object:
    """A CSV cell: numbers and booleans as they are, text through the display rule (no raw
    control byte, no formula: tlssniff.output.display.for_csv). JSON/JSONL/ECS stay exact."""
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    return for_csv(value)


def to_ecs(v: ConnectionVerdict) -> dict:
    """One verdict in Elastic Common Schema field names (ECS 8), tlssniff's own under ``tlssniff``."""
    src_ip, src_port = _split_endpoint(v.client)
    dst_ip, dst_port = _split_endpoint(v.server)
    doc: dict = {
        "@timestamp": datetime.fromtimestamp(v.ts, timezone.utc).isoformat().replace("+00:00", "Z"),
        "event": {"kind": "event", "category": ["network"], "type": ["connection", "protocol"],
                  "dataset": "tlssniff.handshake", "module": "tlssniff"},
        "source": {"ip": src_ip, "port": src_port},
        "destination": {"ip": dst_ip, "port": dst_port},
        "network": {"transport": v.transport, "protocol": "tls"},
        "tls": {"resumed": v.resumed, "established": v.established},
        "tlssniff": {
            "offered": v.offered.value, "handshake": v.handshake.value, "hrr": v.hrr,
            "early_data": v.early_data.value, "note": v.note.value if v.note else None,
        },
    }
    tls = doc["tls"]
    if v.version:
        proto, _, num = v.version.partition("v")
        tls["version_protocol"] = proto.lower()
        tls["version"] = num
    if v.cipher:
        tls["cipher"] = v.cipher
    if v.alpn:
        tls["next_protocol"] = v.alpn
    if v.sni:
        tls["client"] = {"server_name": v.sni}
    if v.session_id:
        tls.setdefault("client", {})["session_id"] = v.session_id
    if v.preamble:
        doc["tlssniff"]["preamble"] = v.preamble
    if v.proxied_client:
        # ECS: the address of the host a proxy forwarded for (``source`` is the proxy).
        doc["network"]["forwarded_ip"] = _split_endpoint(v.proxied_client)[0]
        doc["tlssniff"]["proxied_client"] = v.proxied_client
    return doc


def summary_document(
    agg: Aggregator, counters: dict, captures: list[str], connections: list[dict] | None,
    diagnostics=None,
) -> dict:
    doc = {
        "tlssniff": __version__,
        "captures": captures,
        "totals": agg.total.to_dict(),
        "servers": [s.to_dict() for s in agg.sorted_servers()],
    }
    other = agg.other_dict()
    if other is not None:  # more servers than the aggregator's bound: the rest together
        doc["other_servers"] = other
    doc["counters"] = counters
    if diagnostics is not None:  # tlssniff.analysis.diagnostics.Diagnostics
        d = diagnostics.to_dict()
        doc["findings"] = d.pop("findings")
        doc["diagnostics"] = d
    if connections is not None:
        doc["connections"] = connections
    return doc
