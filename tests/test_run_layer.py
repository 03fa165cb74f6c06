"""The run layer's registries and policies (tlssniff/run/), on real captures."""

from __future__ import annotations

import io
import json

import pytest
import typer

from tests.conftest import CAPTURES
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.errors import CaptureError, ExitCode
from tlssniff.flow.table import Limits
from tlssniff.run import offline
from tlssniff.run.outputs import OUTPUTS
from tlssniff.run.session import FailUnder, Session, conclude

NGINX = CAPTURES / "nginx.pcap"


def test_every_output_format_has_its_registry_line():
    assert tuple(OUTPUTS) == ("table", "json", "jsonl", "csv", "ecs", "parquet")
    assert {f for f, o in OUTPUTS.items() if o.stream} == {"jsonl", "csv", "ecs"}
    assert {f for f, o in OUTPUTS.items() if o.summary} == {"table", "json"}
    assert {f for f, o in OUTPUTS.items() if not o.per_verdict} == {"table"}
    assert {f for f, o in OUTPUTS.items() if o.binary} == {"parquet"}


def test_a_session_feeds_every_sink_in_order():
    seen: list[str] = []
    session = Session(Limits(), [lambda v: seen.append("a"), lambda v: seen.append("b")])
    offline.run_files(session, [NGINX])
    assert session.counters is not None and session.counters.tls_connections > 0
    assert seen == ["a", "b"] * session.counters.tls_connections
    assert "verdicts_read" not in session.counter_dict()


def test_verdict_files_are_a_source_of_the_session(tmp_path):
    from tlssniff.output.formats import VerdictWriter

    lines = io.StringIO()
    want = Aggregator()
    first = Session(Limits(), [want.add, VerdictWriter("jsonl", lines).write])
    offline.run_files(first, [NGINX])
    path = tmp_path / "v.jsonl"
    path.write_text(lines.getvalue())
    agg = Aggregator()
    again = Session(Limits(), [agg.add])
    offline.run_files(again, [path])
    assert again.counter_dict()["verdicts_read"] == len(lines.getvalue().splitlines())
    assert [s.to_dict() for s in agg.sorted_servers()] == \
        [s.to_dict() for s in want.sorted_servers()] != []
    assert json.loads(lines.getvalue().splitlines()[0])["capture"] == str(NGINX)


def test_the_exit_policy(capsys):
    """Errors are exit 2 after the output; --fail-under is exit 3 with the servers named;
    --quiet keeps the warnings off stderr but not the servers under the rate."""
    from tlssniff.output import display

    agg = Aggregator()
    session = Session(Limits(), [agg.add])
    offline.run_files(session, [NGINX])
    err = display.console(stderr=True)
    with pytest.raises(CaptureError, match="^a; b$"):
        conclude(err, errors=["a", "b"], policy=FailUnder(1.0, 1), agg=agg)
    conclude(err, policy=FailUnder(0.0, 1), agg=agg, warnings=["w"], quiet=True)
    assert capsys.readouterr().err == ""
    with pytest.raises(typer.Exit) as exit_:
        conclude(err, policy=FailUnder(1.0, 1), agg=agg, warnings=["w"])
    assert exit_.value.exit_code == ExitCode.BELOW_THRESHOLD
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tlssniff: warning: w"
    assert lines[1].startswith("tlssniff: resumption rate under 100%: ")
