"""The verdicts of a report, kept on disk instead of in memory.

``tlssniff report`` needs every verdict more than once (handshakes.jsonl, the evidence chosen
for the findings, the charts), but only after the analysis, when the findings are known. Every
pass after the analysis reads a :class:`Row` (the nine fields the evidence chooser and the
charts read); the few verdicts the evidence shows are then fetched whole (:meth:`verdict`).

Three stores, one interface (``len``, :meth:`rows`, :meth:`verdicts`, :meth:`verdict`):

* :class:`LineSpool`, ``report``'s own: writes each verdict's handshakes.jsonl line as the
  analysis produces it and spools only its row; a verdict is read back from its line. The
  passes after the analysis read rows, not verdicts: measured on the 400,000-connection
  egress capture (bench/egress.py), pickling whole verdicts cost 10 µs each and replaying
  them 18 µs each, twice; a row costs about 2 µs each way.
* :class:`VerdictSpool`: whole verdicts pickled in batches, replayed in order as often as
  asked (``--anonymize``/``--redact`` rewrite every line, so they need every verdict again).
* :class:`ListStore`: a list held by the caller (a capture loop of one's own, the tests).

Memory holds one batch, whatever the capture holds.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, NamedTuple

from tlssniff.analysis.verdict import (
    ConnectionVerdict,
    EarlyData,
    Handshake,
    Note,
    Offered,
)

BATCH = 2048  # verdicts (or rows) per pickle: a few hundred KB in memory


class Row(NamedTuple):
    """What the passes after the analysis read of one verdict; ``ref`` finds it whole
    (:meth:`LineSpool.verdict`: the offset of its line; the other stores: the verdict)."""

    client: str
    server: str
    sni: str | None
    transport: str
    ts: float
    handshake: str  # Handshake value
    offered: str  # Offered value
    resumed: bool
    refused: bool
    ref: object


def row_of(v: ConnectionVerdict, ref: object) -> Row:
    return Row(v.client, v.server, v.sni, v.transport, v.ts, v.handshake.value,
               v.offered.value, v.resumed, v.refused, ref)


def _batches(f: IO[bytes]) -> Iterator[list]:
    """The pickled batches of ``f``, from its start (appending may go on afterwards)."""
    end = f.seek(0, 2)
    pos = 0
    while pos < end:
        f.seek(pos)
        batch = pickle.load(f)
        pos = f.tell()
        yield batch


class VerdictSpool:
    """An append-only sequence of verdicts on disk: ``append``, ``len``, iterate in order."""

    lines_written = False  # handshakes.jsonl is the bundle's to write

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="tlssniff-verdicts-")
        self._batch: list[ConnectionVerdict] = []
        self._count = 0

    def append(self, v: ConnectionVerdict) -> None:
        self._batch.append(v)
        self._count += 1
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._file.seek(0, 2)
            pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[ConnectionVerdict]:
        self._flush()
        for batch in _batches(self._file):
            yield from batch

    def verdicts(self) -> Iterator[ConnectionVerdict]:
        return iter(self)

    def rows(self) -> Iterator[Row]:
        for v in self:
            yield row_of(v, v)

    @staticmethod
    def verdict(row: Row) -> ConnectionVerdict:
        return row.ref  # type: ignore[return-value]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerdictSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ListStore:
    """The store interface over verdicts the caller holds in a list."""

    lines_written = False

    def __init__(self, verdicts: Sequence[ConnectionVerdict]) -> None:
        self._verdicts = verdicts

    def __len__(self) -> int:
        return len(self._verdicts)

    def __iter__(self) -> Iterator[ConnectionVerdict]:
        return iter(self._verdicts)

    def verdicts(self) -> Iterator[ConnectionVerdict]:
        return iter(self._verdicts)

    def rows(self) -> Iterator[Row]:
        for v in self._verdicts:
            yield row_of(v, v)

    @staticmethod
    def verdict(row: Row) -> ConnectionVerdict:
        return row.ref  # type: ignore[return-value]


class LineSpool:
    """Writes handshakes.jsonl as the verdicts come (``lines``: the bundle's file, binary) and
    spools their rows; :meth:`close_lines` when the analysis ends, then :meth:`reopen` with
    the finished file to read verdicts back (:meth:`verdict`, :meth:`verdicts`).

    The lines are ``ConnectionVerdict.to_json_line`` exactly as the bundle writes them
    otherwise; a verdict read back is the line's (timestamps to the microsecond, as every
    verdict file has them)."""

    lines_written = True

    def __init__(self, lines: IO[bytes]) -> None:
        self._lines: IO[bytes] | None = lines
        self._pos = 0  # offset of the next line
        self._text: list[bytes] = []
        self._rows: list[tuple] = []
        self._file = tempfile.TemporaryFile(prefix="tlssniff-rows-")
        self._count = 0
        self._read: IO[bytes] | None = None

    def append(self, v: ConnectionVerdict) -> None:
        line = v.to_json_line().encode("utf-8")  # as the bundle's text file encodes it
        self._rows.append((v.client, v.server, v.sni, v.transport, v.ts, v.handshake.value,
                           v.offered.value, v.resumed, v.refused, self._pos))
        self._text.append(line)
        self._pos += len(line)
        self._count += 1
        if len(self._rows) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            assert self._lines is not None, "LineSpool: appended after close_lines"
            self._lines.write(b"".join(self._text))
            self._file.seek(0, 2)
            pickle.dump(self._rows, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._rows, self._text = [], []

    def close_lines(self) -> None:
        """The analysis is over: the last lines go to the file (the caller closes it)."""
        self._flush()
        self._lines = None

    def reopen(self, lines: IO[bytes]) -> None:
        """``lines``: handshakes.jsonl, finished, open for reading."""
        self._read = lines

    def __len__(self) -> int:
        return self._count

    def rows(self) -> Iterator[Row]:
        self._flush()
        make = Row._make
        for batch in _batches(self._file):
            yield from map(make, batch)

    def verdict(self, row: Row) -> ConnectionVerdict:
        f = self._read
        assert f is not None, "LineSpool.verdict before reopen"
        f.seek(row.ref)  # type: ignore[arg-type]
        return verdict_of_line(f.readline())

    def verdicts(self) -> Iterator[ConnectionVerdict]:
        f = self._read
        assert f is not None, "LineSpool.verdicts before reopen"
        f.seek(0)
        for line in f:
            yield verdict_of_line(line)

    def __iter__(self) -> Iterator[ConnectionVerdict]:
        return self.verdicts()

    def close(self) -> None:
        self._file.close()
        if self._read is not None:
            self._read.close()

    def __enter__(self) -> LineSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_ENUMS = {"offered": Offered, "handshake": Handshake, "early_data": EarlyData, "note": Note}
_DERIVED = ("resumed",)  # in the line, not a constructor argument


def verdict_of_line(line: bytes) -> ConnectionVerdict:
    """A line this process wrote (``to_json_line``) back to its verdict: trusted, so not
    checked the way :func:`tlssniff.sources.verdict_from_dict` checks a file of unknown origin
    (which refuses, for one, an SNI of over 4,096 characters a hostile capture can hold)."""
    d = json.loads(line)
    for name in _DERIVED:
        d.pop(name, None)
    for name, enum in _ENUMS.items():
        value = d.get(name)
        if value is not None:
            d[name] = enum(value)
    return ConnectionVerdict(**d)


def open_store(verdicts) -> VerdictSpool | ListStore | LineSpool:
    """The store interface over what :func:`~tlssniff.output.report.write_bundle` was given."""
    if isinstance(verdicts, (VerdictSpool, ListStore, LineSpool)):
        return verdicts
    return ListStore(verdicts)


__all__ = ["BATCH", "LineSpool", "ListStore", "Row", "VerdictSpool", "open_store",
           "row_of", "verdict_of_line"]
