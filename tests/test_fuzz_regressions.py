"""Fuzz findings as regression tests, plus short smoke runs of every fuzz target.

Each file under ``tests/data/fuzz/TARGET/`` is an input that once broke a target (a crash, a
hang, a broken invariant) or guards a hostile pattern found while writing one; it must now pass
its target quickly. The long runs (``python -m fuzz run TARGET``) are not part of the suite; see
docs/robustness.md for their figures.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import corpus, targets
from fuzz.engine import Runner, run_mutate
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.messages import DecodeError, parse_client_hello, parse_server_hello

DATA = Path(__file__).resolve().parent / "data" / "fuzz"
REGRESSIONS = sorted(
    (p.parent.name, p) for p in DATA.glob("*/*") if p.is_file()
) if DATA.is_dir() else []


@pytest.mark.parametrize("target,path", REGRESSIONS, ids=[f"{t}/{p.name}" for t, p in REGRESSIONS])
def test_regression_input(target: str, path: Path) -> None:
    data = path.read_bytes()
    t = time.perf_counter()
    targets.TARGETS[target](data)
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_seed_corpus_passes(target: str) -> None:
    seeds = corpus.load(target)
    assert seeds, f"fuzz/corpus/{target} is empty: run `python -m fuzz seeds`"
    for data in seeds:
        targets.TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_smoke_fuzz(target: str, tmp_path: Path) -> None:
    """A few seconds of the mutation engine over the seed corpus: no exception escapes."""
    runner = Runner(target, targets.TARGETS[target], tmp_path, "mutate", iterations=4000,
                    max_seconds=3.0)
    report = run_mutate(runner, corpus.load(target), seed=7, max_len=1 << 16)
    assert report.exceptions == 0, report.render()
    assert report.slowest < 1.0, report.render()


def _real_hellos() -> list[tuple[int, bytes]]:
    out = []
    for seed in corpus.load("hello"):
        if seed[0] in (0, 1):
            out.append((seed[0], seed[1:]))
    return out[:20]


HELLOS = _real_hellos()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HELLOS), st.integers(min_value=0, max_value=4096), st.binary(max_size=64))
def test_cut_hello_plus_garbage_obeys_the_contract(hello, cut: int, tail: bytes) -> None:
    """mitmproxy's test: a real hello cut anywhere, random bytes appended: a value or
    DecodeError, nothing else."""
    which, body = hello
    data = body[: cut % (len(body) + 1)] + tail
    try:
        (parse_client_hello if which == 0 else parse_server_hello)(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.lists(st.integers(1, 300), max_size=30))
def test_tracker_never_raises_on_random_records(data: bytes, cuts: list[int]) -> None:
    """Random bytes behind a valid record header, fed in random pieces to both directions."""
    t = HandshakeTracker(max_message=2048)
    stream = b"\x16\x03\x01" + len(data).to_bytes(2, "big")[-2:] + data
    rng = random.Random(len(data))
    pos = 0
    for c in cuts + [len(stream)]:
        piece, pos = stream[pos : pos + c], pos + c
        (t.client_data if rng.random() < 0.7 else t.server_data)(piece, 1)
    t.finish()
    assert t.error in (None, "malformed", "oversized")
