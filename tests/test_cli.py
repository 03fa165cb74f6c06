"""The command line as a user meets it: help, formats, errors and exit codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import struct

import pytest

from tests.conftest import PUBLIC, analyze_jsonl, run_tlssniff

TLS12 = PUBLIC / "zeek" / "tls" / "tls1.2.pcap"
PSK = PUBLIC / "zeek" / "tls" / "tls13_psk_succesfull.pcap"


def test_help_explains_the_command():
    proc = run_tlssniff("analyze", "--help")
    assert "Classify every TLS handshake" in proc.stdout
    assert "--format" in proc.stdout


def test_version():
    assert run_tlssniff("--version").stdout.startswith("tlssniff ")


def test_jsonl_has_the_stable_fields():
    (rec,) = analyze_jsonl(PSK)
    for name in ("ts", "client", "server", "sni", "version", "offered", "handshake", "resumed",
                 "hrr", "early_data"):
        assert name in rec
    assert rec["client"] == "192.168.178.80:54220"
    assert rec["server"] == "174.138.9.219:443"
    assert (rec["offered"], rec["handshake"], rec["resumed"]) == ("psk", "psk", True)


def test_json_summary_and_connections():
    proc = run_tlssniff("analyze", str(TLS12), str(PSK), "--format", "json")
    doc = json.loads(proc.stdout)
    assert doc["totals"]["handshakes"] == 2
    assert doc["totals"]["resumed"] == 1
    assert len(doc["connections"]) == 2
    servers = {s["server"]: s for s in doc["servers"]}
    assert servers["174.138.9.219:443"]["resumption_rate"] == 1.0
    assert servers["174.138.9.219:443"]["hit_rate"] == 1.0
    assert servers["68.233.76.12:443"]["resumption_rate"] == 0.0
    assert doc["counters"]["tls_connections"] == 2


def test_csv_rows():
    proc = run_tlssniff("analyze", str(PSK), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 1
    assert rows[0]["handshake"] == "psk" and rows[0]["resumed"] == "True"


def test_ecs_names():
    proc = run_tlssniff("analyze", str(PSK), "--format", "ecs")
    doc = json.loads(proc.stdout)
    assert doc["source"]["ip"] == "192.168.178.80"
    assert doc["destination"]["port"] == 443
    assert doc["tls"]["version"] == "1.3"
    assert doc["tls"]["resumed"] is True
    assert "established" in doc["tls"]


def test_table_is_the_default_and_fits_80_columns():
    proc = run_tlssniff("analyze", str(TLS12), str(PSK))
    assert "174.138.9.219:443" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    assert "\x1b[" not in proc.stdout  # no colour when stdout is not a terminal


def test_output_file(tmp_path):
    out = tmp_path / "out.jsonl"
    proc = run_tlssniff("analyze", str(PSK), "-f", "jsonl", "-o", str(out))
    assert proc.stdout == ""
    assert json.loads(out.read_text())["handshake"] == "psk"


def test_gzip_capture(tmp_path):
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(PSK.read_bytes()))
    (rec,) = analyze_jsonl(gz)
    assert rec["handshake"] == "psk"


def _fails_with_one_line(args, needle):
    proc = run_tlssniff(*args, check=False)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlssniff: error: "), proc.stderr
    assert needle in lines[0]


def test_missing_file(tmp_path):
    _fails_with_one_line(["analyze", str(tmp_path / "nope.pcap")], "nope.pcap: no such file")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    _fails_with_one_line(["analyze", str(p)], "empty.pcap")


def test_text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("just some text\n")
    _fails_with_one_line(["analyze", str(p)], "notes.txt: not a pcap or pcapng file")


def test_truncated_header(tmp_path):
    p = tmp_path / "short.pcap"
    p.write_bytes(TLS12.read_bytes()[:10])
    _fails_with_one_line(["analyze", str(p)], "short.pcap")


def test_directory(tmp_path):
    _fails_with_one_line(["analyze", str(tmp_path)], "is a directory")


def test_bad_format():
    _fails_with_one_line(["analyze", str(TLS12), "--format", "xml"], "--format")


def test_garbage_record_reports_what_was_read_then_fails(tmp_path):
    data = bytearray(TLS12.read_bytes())
    off = 24
    for _ in range(12):  # corrupt the 13th record header's caplen
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", data, off + 8, 0x00FFFFFF)
    p = tmp_path / "garbage.pcap"
    p.write_bytes(bytes(data))
    proc = run_tlssniff("analyze", str(p), "-f", "jsonl", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "garbage.pcap" in proc.stderr and "corrupt" in proc.stderr
    # the handshake before the damage was still analyzed
    assert json.loads(proc.stdout.splitlines()[0])["handshake"] == "full"


def test_cut_mid_packet_is_analyzed_with_a_warning(tmp_path):
    data = TLS12.read_bytes()
    p = tmp_path / "cut.pcap"
    p.write_bytes(data[:-100])
    proc = run_tlssniff("analyze", str(p), "-f", "jsonl")
    assert "warning" in proc.stderr and "cut.pcap" in proc.stderr and "truncated" in proc.stderr
    (rec,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rec["handshake"] == "full"


@pytest.mark.parametrize("cut", [30, 100, 700, 1500, 3000])
def test_cut_anywhere_never_crashes(tmp_path, cut):
    p = tmp_path / "cut.pcap"
    p.write_bytes(PSK.read_bytes()[:cut])
    proc = run_tlssniff("analyze", str(p), "-f", "jsonl", check=False)
    assert proc.returncode in (0, 2)
    assert "Traceback" not in proc.stderr


def test_analyze_to_jsonl_imports_neither_pydantic_nor_the_report():
    """What every run pays before its first frame: typer 0.29 imports pydantic and builds a
    TypeAdapter per parameter (0.15 s a run; pyproject.toml holds typer below it), and the
    report package and rich's tables are for other outputs. A run of ``-f jsonl`` with bad
    usage, and one that analyses a capture, import none of them."""
    import subprocess
    import sys

    from tests.conftest import CAPTURES

    probe = ("import runpy, sys\n"
             "sys.argv = ['tlssniff', *sys.argv[1:]]\n"
             "try:\n"
             "    runpy.run_module('tlssniff', run_name='__main__')\n"
             "except SystemExit as e:\n"
             "    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'\n"
             "               or m.startswith(('tlssniff.output.report', 'rich.table')))\n"
             "print(code, heavy, file=sys.stderr)\n")
    for args, status in ((["analyze", str(CAPTURES / "nginx.pcap"), "-f", "jsonl"], 0),
                         (["analyze", str(CAPTURES / "nginx.pcap"), "--jobs", "x"], 2)):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.stderr.splitlines()[-1] == f"{status} []", proc.stderr
    table = subprocess.run([sys.executable, "-c", probe, "analyze", str(CAPTURES / "nginx.pcap")],
                           capture_output=True, text=True, timeout=120)
    assert "'rich.table'" in table.stderr.splitlines()[-1], table.stderr  # the probe sees imports
