"""`tlssniff report` bundles (docs/report.md): files, consistency, annotated pcapng, charts
rendered by a real browser, --anonymize, --redact, and --fail-under on analyze and report."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.bundles import make_bundle
from tests.conftest import CAPTURES, PUBLIC, analyze_jsonl, run_tlssniff

DIAG = CAPTURES / "diagnostics"
FILES = ("summary.md", "report.html", "summary.json", "handshakes.jsonl", "evidence.pcapng",
         "provenance.json")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def _bundle(tmp: Path, *args: str, check: bool = True):
    """Write a bundle; `tlssniff verify` must agree on its own evidence.pcapng."""
    return make_bundle(tmp, *args, check=check)


@pytest.fixture(scope="module", params=["demo.pcapng", "diagnostics/cache-timeout.pcap"])
def bundle(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    _bundle(out, str(CAPTURES / request.param))
    return request.param, out


def _comments(pcapng: Path) -> list[str]:
    proc = subprocess.run(["tshark", "-r", str(pcapng), "-Y", "frame.comment", "-T", "fields",
                           "-e", "frame.comment"], capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line]


def test_every_file_is_there(bundle):
    _, out = bundle
    for name in FILES:
        assert (out / name).stat().st_size > 0, name


@needs_tshark
def test_counts_agree_everywhere(bundle):
    name, out = bundle
    md = (out / "summary.md").read_text()
    prov = json.loads((out / "provenance.json").read_text())
    summ = json.loads((out / "summary.json").read_text())
    lines = (out / "handshakes.jsonl").read_text().splitlines()
    # handshakes.jsonl = summary.md = JSON = a fresh analysis
    n = int(re.search(r"`handshakes.jsonl`: (\d+) connections", md).group(1))
    assert n == len(lines) == prov["counts"]["handshakes_jsonl"] == summ["counts"][
        "handshakes_jsonl"] == len(analyze_jsonl(CAPTURES / name))
    assert summ["totals"]["handshakes"] == n
    # evidence.pcapng: connections and packets in summary.md = JSON = the pcapng's comments
    m = re.search(r"`evidence.pcapng`: (\d+) connections \((\d+) cited by findings, (\d+) "
                  r"sampled from the rest\), (\d+) packets", md)
    conns, cited, sampled, packets = map(int, m.groups())
    ev = prov["counts"]["evidence"]
    assert (conns, cited, sampled, packets) == (ev["connections"], ev["cited"], ev["sampled"],
                                                ev["packets"])
    comments = _comments(out / "evidence.pcapng")
    assert len(comments) == packets  # every packet carries its connection's comment
    assert len(set(comments)) == conns
    assert sum("cited by finding" in c for c in set(comments)) == cited
    assert sum("sample (not cited" in c for c in set(comments)) == sampled
    total = int(subprocess.run(["capinfos", "-c", "-M", str(out / "evidence.pcapng")],
                               capture_output=True, text=True).stdout.split()[-1]) \
        if shutil.which("capinfos") else packets
    assert total == packets
    # every finding's evidence is in the pcapng, commented with its finding
    for f in summ["findings"]:
        for e in f["evidence"]:
            assert any(f"{e['client']} -> {e['server']}" in c and f"finding {f['code']}" in c
                       for c in comments), (f["code"], e)
    # findings listed in summary.md = JSON
    assert len(re.findall(r"^### \d+\. ", md, re.M)) == len(summ["findings"]) == prov[
        "counts"]["findings"]


def test_summary_reads_for_a_stranger():
    """The server that fails, and why, in the first lines; the table; the method."""
    with tempfile.TemporaryDirectory() as tmp:
        _bundle(Path(tmp), str(DIAG / "resumption-disabled.pcap"))
        md = (Path(tmp) / "summary.md").read_text()
        summ = json.loads((Path(tmp) / "summary.json").read_text())
    short = md.split("## In short", 1)[1].split("##", 1)[0]
    failing = summ["failing_servers"]
    assert failing
    for server in failing:
        assert f"**{server}**" in short
    assert "resumption_disabled" in short and "none accepted" in short
    for section in ("## Findings", "## Resumption per server", "## What the verdicts mean",
                    "## How this was analyzed"):
        assert section in md
    assert "(fails)" in md.split("## Resumption per server", 1)[1]


def test_provenance(bundle):
    name, out = bundle
    prov = json.loads((out / "provenance.json").read_text())
    src = CAPTURES / name
    import hashlib

    [inp] = prov["inputs"]
    assert inp["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert inp["size"] == src.stat().st_size
    assert prov["tlssniff"] and prov["analyzed_at"].endswith("Z")
    assert "report" in prov["command"] and str(src) in prov["command"]
    assert prov["capture"]["first_ts"] <= prov["capture"]["last_ts"]
    assert prov["counts"]["frames"] > 0 and prov["counts"]["tls_connections"] > 0
    if shutil.which("tshark"):
        assert prov["cross_check"]["ran"] and prov["cross_check"]["agree"]
    else:
        assert "not installed" in prov["cross_check"]["error"]
    for fname in ("summary.md", "handshakes.jsonl", "evidence.pcapng"):
        assert prov["files"][fname]["sha256"] == hashlib.sha256(
            (out / fname).read_bytes()).hexdigest()


def test_html_is_self_contained(bundle):
    _, out = bundle
    page = (out / "report.html").read_text()
    # three charts, each drawn or replaced by a note saying why not
    drawn = page.count("<svg")
    missing = page.count("not drawn, too few handshakes") + page.count("Mechanism mix: no ") \
        + page.count("Session ages: no offer could be linked")
    assert drawn + missing == 3 or "No charts" in page, (drawn, missing)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed "
                    "(scripts/install-system-deps.sh installs it)")
def test_html_renders_charts_in_chromium(tmp_path):
    pytest.importorskip("matplotlib")
    from tlssniff.testing.generate import generate

    # enough handshakes over time for the rate chart (real handshakes, fixed seed), and the
    # cache-timeout servers for the session ages
    busy = tmp_path / "busy.pcap"
    generate(busy, tmp_path / "busy.truth.jsonl", 240, seed=3, servers=3, rate=8.0,
             start=1_795_319_700.0)  # next to cache-timeout.pcap's time
    out = tmp_path / "b"
    _bundle(out, str(busy), str(DIAG / "cache-timeout.pcap"))
    assert (out / "report.html").read_text().count("<svg") == 3
    png = tmp_path / "shot.png"
    profile = tempfile.mkdtemp()
    try:
        subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
             "--window-size=1200,2000", (out / "report.html").resolve().as_uri()],
            capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2000)
    # The charts sit below the headline: many colours there, and the series' own colours.
    region = img.crop((0, 450, 1200, 1500))
    colours = region.getcolors(maxcolors=1 << 20)
    assert len(colours) > 200, len(colours)
    present = {c for _, c in colours}

    def near(rgb):
        return any(sum(abs(a - b) for a, b in zip(rgb, c)) < 30 for c in present)

    for rgb in ((0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28), (0x1F, 0x77, 0xB4)):
        assert near(rgb), rgb  # green (resumed/accepted), red (refused), blue (a series)


def _addresses(records: list[dict]) -> tuple[set[str], set[str]]:
    clients = {r["client"].rpartition(":")[0].strip("[]") for r in records}
    servers = {r["server"].rpartition(":")[0].strip("[]") for r in records}
    return clients, servers


@pytest.mark.parametrize("captures", [
    [DIAG / "cluster-separate-keys.pcap"],
    [PUBLIC / "zeek" / "tls" / "tls1.2.pcap", PUBLIC / "zeek" / "tls" / "tls13_psk_succesfull.pcap"],
], ids=["loopback-cluster", "public"])
def test_anonymize_leaves_no_client_address(tmp_path, captures):
    if not all(p.exists() for p in captures):
        pytest.skip("public captures not present")
    out = tmp_path / "b"
    _bundle(out, *map(str, captures), "--anonymize")
    records = analyze_jsonl(*captures)
    clients, servers = _addresses(records)
    leaking = clients - servers
    assert leaking
    for ip in leaking:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        for f in out.iterdir():
            data = f.read_bytes()
            assert ip.encode() not in data, (ip, f.name)
            assert packed not in data, (ip, f.name, "packed")
    # consistent: the pseudonymized packets give the same verdicts, under the same pseudonyms
    got = analyze_jsonl(out / "evidence.pcapng")
    jsonl = {(r["client"], r["server"], r["handshake"], r["offered"])
             for r in map(json.loads, (out / "handshakes.jsonl").read_text().splitlines())}
    assert got and {(r["client"], r["server"], r["handshake"], r["offered"]) for r in got} <= jsonl
    assert all(r["server"].rpartition(":")[0].strip("[]") in servers for r in got)
    if shutil.which("tshark"):  # checksums still valid after the rewrite (where they were)
        before = subprocess.run(["tshark", "-r", str(captures[0]), "-o", "ip.check_checksum:TRUE",
                                 "-Y", "ip.checksum.status==0"], capture_output=True, text=True)
        after = subprocess.run(["tshark", "-r", str(out / "evidence.pcapng"), "-o",
                                "ip.check_checksum:TRUE", "-Y", "ip.checksum.status==0"],
                               capture_output=True, text=True)
        assert not after.stdout.strip() or before.stdout.strip()


def test_redact_hides_sessions_and_keeps_links(tmp_path):
    cap = DIAG / "cache-timeout.pcap"
    out = tmp_path / "b"
    _bundle(out, str(cap), "--redact")
    records = analyze_jsonl(cap)
    secrets = {r[k] for r in records for k in ("session_id", "issued_session_id", "ticket_hash",
                                                "issued_ticket_hash", "ticket_key_name")
               if r.get(k)}
    assert secrets
    ids = {r[k] for r in records for k in ("session_id", "issued_session_id") if r.get(k)}
    for f in out.iterdir():
        data = f.read_bytes()
        for s in secrets:
            assert s.encode() not in data, (s, f.name)
        for s in ids:
            assert bytes.fromhex(s) not in data, (s, f.name, "raw")
    red = [json.loads(line) for line in (out / "handshakes.jsonl").read_text().splitlines()]
    issued = {r["issued_session_id"] for r in red if r["issued_session_id"]}
    offered_ids = [r for r in red if r["offered"] == "session_id"]
    assert offered_ids and all(r["session_id"] in issued for r in offered_ids)
    assert all(r["session_id"].startswith("r:") for r in offered_ids)
    # the redacted packets are still valid TLS: the same verdicts
    got = {(r["client"], r["handshake"], r["offered"]) for r in analyze_jsonl(out / "evidence.pcapng")}
    assert got == {(r["client"], r["handshake"], r["offered"]) for r in records}


def test_fail_under_analyze_exit_3():
    demo = str(CAPTURES / "demo.pcapng")
    proc = run_tlssniff("analyze", demo, "--fail-under", "60%", "--min-handshakes", "5",
                        check=False)
    assert proc.returncode == 3
    assert "127.0.0.1:44331" in proc.stderr and "127.0.0.1:44340 tlssniff.test" in proc.stderr
    assert "127.0.0.1:44341" not in proc.stderr  # 4 handshakes: below --min-handshakes
    assert run_tlssniff("analyze", demo, "--fail-under", "60%", check=False).returncode == 0
    assert run_tlssniff("analyze", demo, "--fail-under", "0.1", "--min-handshakes", "1",
                        check=False).returncode == 3  # the 0% servers with 1 handshake
    assert run_tlssniff("analyze", demo, "--fail-under", "nope", check=False).returncode == 2
    assert "--fail-under" in run_tlssniff("analyze", "--help").stdout


def test_fail_under_report_exit_3(tmp_path):
    proc = _bundle(tmp_path / "b", str(CAPTURES / "demo.pcapng"), "--fail-under", "0.6",
                   "--min-handshakes", "5", "--no-verify", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "127.0.0.1:44331" in proc.stderr
    summ = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert set(summ["fail_under"]["servers"]) == {"127.0.0.1:44340 tlssniff.test",
                                                   "127.0.0.1:44331"}
    md = (tmp_path / "b" / "summary.md").read_text()
    assert "below the required 60%" in md


def test_write_bundle_in_memory(tmp_path):
    """What `live --report DIR` calls: verdicts in memory, no capture file to re-read."""
    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.engine.parallel import analyze_captures
    from tlssniff.output.report import fail_under, write_bundle

    verdicts = []
    counters = analyze_captures([str(DIAG / "resumption-disabled.pcap")], verdicts.append)
    b = write_bundle(tmp_path / "live", verdicts, counters=counters.to_dict(), inputs=[],
                     argv=["tlssniff", "live", "lo", "--report", "x"], fail_under_rate=0.5,
                     min_handshakes=1)
    assert set(FILES) <= set(b.files)
    assert b.findings and b.problem_servers and b.failing
    assert b.evidence.packets == 0
    agg = Aggregator()
    for v in verdicts:
        agg.add(v)
    assert [s.server for s in fail_under(agg, 0.5, 1)] == [s.server for s in b.failing]
    assert fail_under(agg, 0.5, 10_000) == []
    prov = json.loads((tmp_path / "live" / "provenance.json").read_text())
    assert prov["command"][:2] == ["tlssniff", "live"]
    assert prov["cross_check"]["ran"] is False


def test_bad_output_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = run_tlssniff("report", str(CAPTURES / "demo.pcapng"), "-o", str(f), check=False)
    assert proc.returncode == 2 and "not a directory" in proc.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
