"""Machine-readable outputs: JSONL (streamed), JSON, CSV and Elastic Common Schema lines."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from typing import IO

from tlssniff import __version__
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.output.display import for_csv

FORMATS = ("table", "json", "jsonl", "csv", "ecs", "parquet")  # parquet: output/parquet.py

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
    """Writes each verdict as it arrives (jsonl, csv, ecs) or keeps it for the summary (json)."""

    def __init__(self, fmt: str, out: IO[str]):
        self.fmt = fmt
        self.out = out
        self.kept: list[dict] = []
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
            self._csv.writeheader()

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
            self.kept.append(v.to_dict())


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
        "counters": counters,
    }
    if diagnostics is not None:  # tlssniff.analysis.diagnostics.Diagnostics
        d = diagnostics.to_dict()
        doc["findings"] = d.pop("findings")
        doc["diagnostics"] = d
    if connections is not None:
        doc["connections"] = connections
    return doc
