"""The verdicts of a report, kept on disk instead of in memory.

``tlssniff report`` needs every verdict more than once (handshakes.jsonl, the evidence chosen
for the findings, the charts), but only after the analysis, when the findings are known.
:class:`VerdictSpool` appends them, pickled in batches, to an anonymous temporary file
(unlinked at once, readable only by this process) and replays them in order as often as
asked: memory holds one batch, whatever the capture holds.
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator

from tlssniff.analysis.verdict import ConnectionVerdict

BATCH = 2048  # verdicts per pickle: a few hundred KB in memory


class VerdictSpool:
    """An append-only sequence of verdicts on disk: ``append``, ``len``, iterate in order."""

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
        f = self._file
        f.seek(0)
        end = f.seek(0, 2)
        pos = 0
        while pos < end:
            f.seek(pos)
            batch = pickle.load(f)
            pos = f.tell()
            yield from batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerdictSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
