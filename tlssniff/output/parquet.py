"""Verdicts as a Parquet table (``analyze -f parquet -o FILE``): one row per TLS connection.

Every JSONL field is a column, typed: timestamps as ``timestamp[us, UTC]`` (the microsecond
JSONL rounds to), booleans as booleans, counts as int64, lists as lists, everything else as
strings. Rows are written in row groups of :data:`ROW_GROUP` as they come, so memory stays
bounded whatever the capture holds. DuckDB, pandas, Polars and Spark read the file directly
(docs/scale.md); :func:`read_verdicts` reads it back into the dicts the JSONL lines hold.

pyarrow is the ``parquet`` extra (``pip install 'tlssniff[parquet]'``); it is imported only when
this format is used.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterator

from tlssniff.analysis.verdict import VALUE, ConnectionVerdict, EarlyData, Handshake, Note, Offered
from tlssniff.errors import UsageError

_ENUMS = (Offered, Handshake, EarlyData, Note)
ROW_GROUP = 65_536  # rows per row group: ~10 MB of columns in memory at most

# (column, kind) in the JSONL field order. Kinds: ts (timestamp, required), ots (timestamp or
# null), rstr (string, required), str, bool, int, oint (int or null), strs (list of strings),
# ints (list of ints).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "ts"), ("client", "rstr"), ("server", "rstr"), ("transport", "rstr"),
    ("starttls", "str"), ("preamble", "str"), ("proxied_client", "str"), ("sni", "str"), ("version", "str"), ("offered", "rstr"),
    ("handshake", "rstr"), ("resumed", "bool"), ("hrr", "bool"), ("early_data", "rstr"),
    ("established", "bool"), ("alpn", "str"), ("alpn_offered", "strs"), ("cipher", "str"),
    ("note", "str"), ("alert", "str"), ("session_id", "str"), ("ticket_len", "int"),
    ("psk_identities", "int"), ("issued_session_id", "str"), ("issued_ticket", "bool"),
    ("ticket_lifetime", "oint"), ("frames", "ints"), ("capture", "str"), ("ja4", "str"),
    ("ja4_base", "str"), ("ticket_key_name", "str"), ("ticket_hash", "str"),
    ("psk_identity_hash", "str"), ("issued_ticket_key_name", "str"),
    ("issued_ticket_hash", "str"), ("client_hello_ts", "ots"), ("server_hello_ts", "ots"),
    ("handshake_end_ts", "ots"), ("psk_key_name", "str"),
)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install 'tlssniff[parquet]'") from None
    return pyarrow


def schema() -> Any:
    pa = _pyarrow()
    types = {
        "ts": pa.timestamp("us", tz="UTC"), "ots": pa.timestamp("us", tz="UTC"),
        "rstr": pa.string(), "str": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "oint": pa.int64(),
        "strs": pa.list_(pa.string()), "ints": pa.list_(pa.int64()),
    }
    return pa.schema([pa.field(name, types[kind], nullable=kind not in ("ts", "rstr", "bool", "int"))
                      for name, kind in COLUMNS])


def _usec(x: float | None) -> int | None:
    return None if x is None else int(x * 1_000_000 + 0.5)


class ParquetVerdictWriter:
    """Collects verdicts column by column and writes a row group every :data:`ROW_GROUP`."""

    def __init__(self, path: str, row_group: int = ROW_GROUP):
        pa = _pyarrow()
        self._pa = pa
        self._schema = schema()
        try:
            self._writer = pa.parquet.ParquetWriter(path, self._schema, compression="zstd")
        except OSError as err:
            raise UsageError(f"{path}: cannot write: {err}") from None
        self._row_group = row_group
        self._cols: dict[str, list] = {name: [] for name, _ in COLUMNS}
        self.rows = 0

    def write(self, v: ConnectionVerdict) -> None:
        """One row: each column of :data:`COLUMNS` read from the verdict by name (the schema
        is written once, there), enums as their JSONL values, times as microseconds."""
        c = self._cols
        for name, kind in COLUMNS:
            x = getattr(v, name)
            if kind in ("ts", "ots"):
                x = _usec(x)
            elif kind in ("strs", "ints"):
                x = list(x)
            elif x is not None and x.__class__ in _ENUMS:
                x = VALUE[x]
            c[name].append(x)
        self.rows += 1
        if len(c["ts"]) >= self._row_group:
            self._flush()

    def _flush(self) -> None:
        if not self._cols["ts"]:
            return
        table = self._pa.Table.from_pydict(self._cols, schema=self._schema)
        self._writer.write_table(table)
        for col in self._cols.values():
            col.clear()

    def close(self) -> None:
        """Write the last row group and the footer (an empty capture gives a valid empty table)."""
        self._flush()
        self._writer.close()


def _seconds(t: datetime.datetime | None) -> float | None:
    if t is None:
        return None
    us = (t - _EPOCH) // datetime.timedelta(microseconds=1)
    return us / 1_000_000


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def read_verdicts(path: str) -> Iterator[dict]:
    """The rows of a file ``-f parquet`` wrote, as the dicts its JSONL lines hold (equal to
    ``json.loads`` of each line, fields in the same order), one row group at a time."""
    pa = _pyarrow()
    f = pa.parquet.ParquetFile(path)
    names = [name for name, _ in COLUMNS]
    missing = [n for n in names if n not in f.schema_arrow.names]
    if missing:
        raise UsageError(f"{path}: not a tlssniff verdict table (no column {missing[0]!r})")
    kinds = dict(COLUMNS)
    for i in range(f.num_row_groups):
        cols = f.read_row_group(i, columns=names).to_pydict()
        for row in zip(*(cols[n] for n in names)):
            rec = dict(zip(names, row))
            for n in names:
                if kinds[n] in ("ts", "ots"):
                    rec[n] = _seconds(rec[n])
            yield rec
