"""-f parquet: one typed row per connection, equal to the JSONL; read by pyarrow and DuckDB."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, PUBLIC, run_tlssniff

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")

from tlssniff.engine.pipeline import Analyzer  # noqa: E402
from tlssniff.output import parquet  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs" / "scale.md"
CAPS = [CAPTURES / "demo.pcapng", CAPTURES / "partitions" / "sid-refused-tls13-client.pcap",
        *sorted((PUBLIC / "zeek" / "tls").glob("*.pcap"))[:12]]


def _jsonl(path) -> list[dict]:
    out = run_tlssniff("analyze", str(path), "-f", "jsonl", "-q").stdout
    return [json.loads(line) for line in out.splitlines()]


def _parquet(path, tmp_path, *extra) -> Path:
    dest = tmp_path / (Path(path).name + ".parquet")
    run_tlssniff("analyze", str(path), "-f", "parquet", "-o", str(dest), "-q", *extra)
    return dest


def test_rows_equal_the_jsonl_on_real_captures(tmp_path):
    """Every JSONL field has its column, one row per connection, every value equal (read
    back with read_verdicts, the reader verdict inputs use)."""
    total = 0
    for path in CAPS:
        want = _jsonl(path)
        dest = _parquet(path, tmp_path)
        table = pq.read_table(dest)
        assert table.num_rows == len(want), path
        if want:
            assert table.column_names == list(want[0])
        got = list(parquet.read_verdicts(str(dest)))
        assert got == want, path
        total += len(want)
    assert total > 60


def test_columns_are_typed(tmp_path):
    table = pq.read_table(_parquet(CAPTURES / "demo.pcapng", tmp_path))
    s = table.schema
    assert s.field("ts").type == pa.timestamp("us", tz="UTC")
    assert s.field("client_hello_ts").type == pa.timestamp("us", tz="UTC")
    for name in ("resumed", "hrr", "established", "issued_ticket"):
        assert s.field(name).type == pa.bool_(), name
    for name in ("ticket_len", "psk_identities", "ticket_lifetime"):
        assert s.field(name).type == pa.int64(), name
    assert s.field("frames").type == pa.list_(pa.int64())
    assert s.field("alpn_offered").type == pa.list_(pa.string())
    for name in ("sni", "version", "offered", "handshake", "ja4", "session_id"):
        assert s.field(name).type == pa.string(), name
    rows = table.to_pylist()
    assert sum(r["resumed"] for r in rows) == 16  # demo.truth.jsonl: 16 resumed of 40
    assert rows[0]["ts"].tzinfo is not None


def test_duckdb_reads_it(tmp_path):
    path = CAPTURES / "demo.pcapng"
    dest = _parquet(path, tmp_path)
    want = _jsonl(path)
    con = duckdb.connect()
    n, resumed, first = con.execute(
        "select count(*), count(*) filter (where resumed), min(ts) from read_parquet(?)",
        [str(dest)]).fetchone()
    assert n == len(want) == 40
    assert resumed == sum(r["resumed"] for r in want)
    assert first.timestamp() == min(r["ts"] for r in want)
    by = dict(con.execute("select handshake, count(*) from read_parquet(?) group by 1",
                          [str(dest)]).fetchall())
    assert by == {"full": 24, "psk": 9, "session_id": 3, "ticket": 4}


def _doc_queries() -> list[str]:
    text = DOCS.read_text()
    return re.findall(r"```sql\n(.*?)```", text, re.S)


def test_the_three_documented_duckdb_queries_run(tmp_path):
    """docs/scale.md's queries, on the demo capture, give what its JSONL says."""
    dest = _parquet(CAPTURES / "demo.pcapng", tmp_path)
    want = _jsonl(CAPTURES / "demo.pcapng")
    queries = _doc_queries()
    assert len(queries) == 3
    con = duckdb.connect()
    results = [con.execute(q.replace("'verdicts.parquet'", f"'{dest}'")).fetchall()
               for q in queries]
    # 1. resumption by server by hour: handshakes add up to every classified connection.
    assert sum(r[2] for r in results[0]) == sum(r["handshake"] != "unknown" for r in want)
    assert sum(r[3] for r in results[0]) == sum(r["resumed"] for r in want)
    # 2. refused offers by JA4.
    refused = [r for r in want if r["offered"] != "none" and r["handshake"] == "full"]
    assert sum(r[-1] for r in results[1]) == len(refused) > 0
    assert {r[0] for r in results[1]} == {r["ja4"] for r in refused}
    # 3. sessions by age: every resumption whose issuing connection is in the capture.
    assert results[2] and all(r[-1] >= 1 for r in results[2])


def test_row_groups_bound_memory(tmp_path):
    """The writer flushes a row group every ROW_GROUP rows (here 7) instead of holding all."""
    dest = tmp_path / "small-groups.parquet"
    w = parquet.ParquetVerdictWriter(str(dest), row_group=7)
    a = Analyzer(w.write)
    a.analyze_file(str(CAPTURES / "demo.pcapng"))
    a.finish()
    w.close()
    f = pq.ParquetFile(dest)
    assert f.metadata.num_rows == 40
    assert f.num_row_groups == 6
    assert [r["client"] for r in parquet.read_verdicts(str(dest))] == [
        r["client"] for r in _jsonl(CAPTURES / "demo.pcapng")]


def test_parquet_needs_an_output_file():
    proc = run_tlssniff("analyze", str(CAPTURES / "demo.pcapng"), "-f", "parquet", check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "--output" in proc.stderr


def test_parquet_with_jobs_equals_one_process(tmp_path):
    one = _parquet(CAPTURES / "demo.pcapng", tmp_path)
    two = tmp_path / "two.parquet"
    run_tlssniff("analyze", str(CAPTURES / "demo.pcapng"), "-f", "parquet", "-o", str(two),
                 "--jobs", "2", "-q")
    assert pq.read_table(one).equals(pq.read_table(two))
