"""The live entry and the file entry give the same verdicts and the same counters.

Every shipped capture (captures/**, pcap and pcapng, the public ones included) goes through the
file entry (:func:`tlssniff.run.offline.run_files`, what ``analyze`` runs) and through the live
entry (:class:`tlssniff.run.live.CaptureLoop`, what ``live`` runs: its read/feed loop, its
drain at the stop, ``Analyzer.feed_frame``, ``Analyzer.finish``), fed by a source that hands out
the capture's frames as the kernel ring does, in batches, then stops like a SIGINT. The
verdicts must be identical (every field of the JSONL line), and so must every counter except
those the session declares to depend on the source (``run.session.SOURCE_COUNTERS``), each of
which is checked for its own meaning on each side.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import CAPTURES
from tlssniff.capture.files import open_capture
from tlssniff.capture.live import KernelStats
from tlssniff.flow.table import Limits
from tlssniff.run import offline
from tlssniff.run.live import CaptureLoop
from tlssniff.run.session import SOURCE_COUNTERS, Session

SHIPPED = sorted(p for p in CAPTURES.rglob("*")
                 if p.is_file() and p.name.endswith((".pcap", ".pcapng", ".pcap.gz",
                                                     ".pcapng.gz")))


class CaptureAsInterface:
    """A capture file as a live source: ``read`` hands out up to ``limit`` frames in batches
    of varying size (as ring blocks come), ``wait`` returns at once. Half-way through the run
    is stopped as SIGINT stops it: the other half is what the ring still holds, which the
    loop's drain must read (it ends at the first empty read, ``drain_quiet`` 0)."""

    def __init__(self, path: Path, stop: list[str]) -> None:
        with open_capture(path) as cap:
            self.frames = list(cap.frames())
        self.stop = stop
        self.at = 0
        self.turn = 0
        self.waits = 0

    def read(self, limit: int = 4096) -> list[tuple[float, int, bytes]]:
        self.turn += 1
        n = min(limit, (1, 7, 64, 3)[self.turn % 4])
        batch = self.frames[self.at:self.at + n]
        self.at += len(batch)
        if self.at >= len(self.frames) // 2 and not self.stop:
            self.stop.append("SIGINT")
        return batch

    def wait(self, timeout: float) -> bool:
        self.waits += 1
        return False

    def stats(self) -> KernelStats:
        return KernelStats(received=len(self.frames))


def _file_entry(path: Path) -> tuple[list[str], dict]:
    verdicts: list = []
    session = Session(Limits(), [verdicts.append])
    offline.run_files(session, [path])
    return [v.to_json_line() for v in verdicts], session.counter_dict()


def _live_entry(path: Path, count: int | None = None
                ) -> tuple[list[str], dict, CaptureAsInterface]:
    verdicts: list = []
    session = Session(Limits(), [verdicts.append], source="live")
    stop: list[str] = []
    source = CaptureAsInterface(path, stop)
    if count is not None:
        source.stop = []  # --count alone stops the run
    loop = CaptureLoop(source, session, str(path))
    end = loop.run(stop, [], count=count, drain_quiet=0.0)
    loop.finish()
    assert end.frames == len(source.frames)
    assert end.why == ("SIGINT" if count is None else "count")
    return [v.to_json_line() for v in verdicts], session.counter_dict(), source


def test_every_shipped_capture_is_compared():
    kinds = {p.suffix for p in SHIPPED}
    assert len(SHIPPED) >= 100 and {".pcap", ".pcapng"} <= kinds
    assert any("public" in p.parts for p in SHIPPED)


def test_the_source_dependent_counters_are_named():
    assert set(SOURCE_COUNTERS) == {"bytes"}
    assert all(set(meaning) == {"file", "live"} for meaning in SOURCE_COUNTERS.values())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_live_entry_equals_file_entry(path: Path):
    file_verdicts, file_counters = _file_entry(path)
    live_verdicts, live_counters, source = _live_entry(path)
    assert live_verdicts == file_verdicts
    assert file_counters.keys() == live_counters.keys()
    same = {k for k in file_counters if k not in SOURCE_COUNTERS}
    assert {k: live_counters[k] for k in same} == {k: file_counters[k] for k in same}
    # bytes: the file's bytes read, headers included; the live capture's frame bytes.
    assert file_counters["bytes"] == os.path.getsize(path)
    assert live_counters["bytes"] == sum(len(f) for _, _, f in source.frames)
    assert file_counters["bytes"] > live_counters["bytes"] or not source.frames


@pytest.mark.parametrize("name", ["nginx.pcap", "openssl-tls13.pcap"])
def test_live_entry_with_count_equals_file_entry(name: str):
    """``--count`` (every frame of the capture) ends the loop itself, without the drain."""
    path = CAPTURES / name
    with open_capture(path) as cap:
        frames = sum(1 for _ in cap.frames())
    file_verdicts, file_counters = _file_entry(path)
    live_verdicts, live_counters, _ = _live_entry(path, count=frames)
    assert live_verdicts == file_verdicts != []
    assert {k: v for k, v in live_counters.items() if k != "bytes"} == \
        {k: v for k, v in file_counters.items() if k != "bytes"}
