"""Captured values stay data on every channel a human reads (tlssniff/output/display.py).

The corpus is captures/hostile/ (tlssniff/testing/hostile.py, scripts/make_hostile_captures.py):
ClientHellos and ServerHellos whose SNI and ALPN carry terminal control sequences, rich markup,
emoji codes, markdown and HTML, spreadsheet formulas, NUL/CR/LF/TAB/DEL, non-UTF-8 bytes and
64 KB names. Each channel is run as a user runs it (``python -m tlssniff``; a pseudo-terminal
where rich must believe it talks to a terminal) and the assertions are on the raw bytes
written: no control byte a value brought, no markup, link, HTML or formula made of one, and
the machine outputs (JSON, JSONL) exact.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CAPTURES, REPO, run_tlssniff
from tlssniff.output import display
from tlssniff.testing import hostile

HOSTILE = CAPTURES / "hostile" / "hostile.pcap"
TRUTH = [json.loads(line) for line in (CAPTURES / "hostile" / "truth.jsonl").read_text()
         .splitlines()]
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

# What rich itself writes on a terminal: colours and styles (SGR), and for the live dashboard
# cursor hiding, line erasing and cursor movement (after a carriage return). Anything else
# starting with ESC came from a captured value.
_RICH_CSI = re.compile(rb"\x1b\[(?:[0-9;]*m|\?25[lh]|2K|[0-9]*[ABCDG]|\?1049[hl]|\?7[hl])"
                       rb"|\r(?=\x1b\[)")  # the live display's return before moving up or erasing
# Sequences the hostile values carry: none may reach a terminal or a file raw.
_ATTACKS = (b"\x1b]0;owned", b"\x1b[2J", b"\x1b[H", b"\x1b]8;;", b"\x1b[1mbold.example",
            b"\x07", b"\x00", b"\x7f", b"\x08", b"\x0d\x0a# heading")


def _raw_controls(data: bytes, allow_newline: bool = True) -> list[bytes]:
    """Control bytes in ``data`` other than rich's own sequences (and LF)."""
    rest = _RICH_CSI.sub(b"", data)
    bad = []
    for b in set(rest):
        if (b < 0x20 or b == 0x7F) and not (allow_newline and b == 0x0A):
            bad.append(bytes([b]))
    return sorted(bad)


def _assert_clean(data: bytes, where: str) -> None:
    assert not _raw_controls(data), f"{where}: raw control bytes {_raw_controls(data)}"
    for attack in _ATTACKS:
        assert attack not in data, f"{where}: {attack!r} written raw"
    text = data.decode("utf-8")
    assert "\u26a0" not in text and "\U0001f480" not in text, f"{where}: emoji codes rendered"


def _run_pty(args: list[str], timeout: float = 120, cols: int = 200) -> tuple[int, bytes, str]:
    """``python -m tlssniff ARGS`` with stdout on a pseudo-terminal (raw mode: bytes as written),
    stderr to a pipe. Returns (exit status, terminal bytes, stderr)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    fcntl_winsize(slave, 50, cols)
    env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(cols), LINES="50")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "tlssniff", *args], stdin=slave,
                            stdout=slave, stderr=subprocess.PIPE, cwd=REPO, env=env)
    os.close(slave)
    data = _drain_pty(master, proc, timeout)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.returncode, data, err


def fcntl_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _drain_pty(master: int, proc: subprocess.Popen, timeout: float) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side is closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("tlssniff on a pty did not finish")
    finally:
        os.close(master)
        proc.wait(timeout=30)
    return b"".join(chunks)


# -- the display rule itself -------------------------------------------------------------------


@pytest.mark.parametrize("raw, shown", [
    ("\x1b]0;t\x07", "\\x1b]0;t\\x07"),
    ("a\x00b", "a\\x00b"),
    ("\r\n\t", "\\x0d\\x0a\\x09"),
    ("\x7f\x85\x9b", "\\x7f\\x85\\x9b"),  # DEL, C1 NEL and CSI
    ("\u202egnp.exe", "\\u202egnp.exe"),  # bidi override
    ("\u2066x\u2069", "\\u2066x\\u2069"),  # bidi isolates
    ("a\u200bb\ufeff", "a\\u200bb\\ufeff"),  # zero-width space, BOM
    ("\u2028\u00a0", "\\u2028\\xa0"),  # line separator, no-break space
    ("\udcff", "\\udcff"),  # lone surrogate (surrogateescape of a non-UTF-8 byte)
    ("\U000e0041", "\\U000e0041"),  # tag character
    ("\\x1b", "\\\\x1b"),  # a backslash is escaped: the escape of ESC stays unambiguous
    ("www.example.com", "www.example.com"),
    ("caf\u00e9 \ufffd", "caf\u00e9 \ufffd"),  # printable non-ASCII stays readable
])
def test_escape_makes_every_non_printable_character_a_visible_escape(raw, shown):
    assert display.escape(raw) == shown
    assert display.for_terminal(raw) == shown


def test_escape_is_reversible_so_nothing_is_lost():
    raw = "".join(chr(i) for i in range(0, 0x3000, 7)) + "\\\udcff\U0010ffff"
    shown = display.escape(raw)
    assert shown.isprintable()
    assert _unescape(shown) == raw


_UNESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def _unescape(shown: str) -> str:
    return _UNESCAPE.sub(
        lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1)[1:], 16)), shown)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=())))  # surrogates included
def test_every_channel_function_holds_its_promise_for_any_text(raw):
    shown = display.escape(raw)
    assert shown.isprintable() and _unescape(shown) == raw
    cell = display.for_csv(raw)
    assert cell.isprintable() and not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    comment = display.for_comment(raw, 200)
    assert comment.isprintable() and len(comment.encode()) <= 200
    assert display.for_html(raw).isprintable() and "<" not in display.for_html(raw)
    assert display.for_terminal(raw).isprintable()
    assert len(display.shorten(raw, 40)) <= 40 + len("…()  characters") + 20


def test_shorten_keeps_the_start_and_says_the_full_length():
    assert display.shorten("a" * 64000, 10) == "aaaaaaaaaa…(64000 characters)"
    assert display.shorten("a" * 10, 10) == "a" * 10
    # cut between escapes, never inside one
    assert display.shorten("\x1b" * 100, 10) == "\\x1b\\x1b…(100 characters)"
    assert display.shorten(None) == ""


def test_terminal_text_is_never_markup_nor_emoji():
    from rich.console import Console

    for value in ("evil[/]", "[bold red]x[/bold red]", "[link=file:///etc/passwd]x[/link]",
                  ":warning:"):
        out = io.StringIO()
        console = display.console(file=out, force_terminal=True, color_system="truecolor")
        console.print(display.terminal_text(value))
        assert out.getvalue() == value + "\n"
        # the same pasted into markup, escaped (emoji are off on every tlssniff console)
        out = io.StringIO()
        Console(file=out, force_terminal=True, emoji=False, highlight=False).print(
            "[dim]" + display.for_markup(value) + "[/dim]")
        assert out.getvalue() == "\x1b[2m" + value + "\x1b[0m\n"
        out = io.StringIO()
        Console(file=out, emoji=False, highlight=False).print(display.for_markup(value))
        assert out.getvalue() == value + "\n"


def test_markdown_value_renders_as_its_own_text():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    for value in ("<img src=x onerror=alert(1)>", "[text](http://x)", "![i](http://x/i.png)",
                  "**bold** _em_ `code`", "a|b", "&lt;", "# h", "~~s~~", "<http://x>",
                  "\r\n# heading\r\n"):
        cell = display.for_markdown(value)
        rendered = md.render(f"| a | b |\n|---|---|\n| {cell} | x |\n")
        assert "<img" not in rendered and "<a " not in rendered and "<strong>" not in rendered
        assert "<em>" not in rendered and "<code>" not in rendered and "<h1>" not in rendered
        assert "<del>" not in rendered and rendered.count("<td>") == 2, (value, rendered)
        para = md.render(f"- **{cell}** has a problem")
        assert "<img" not in para and "<a " not in para and para.count("<strong>") == 1
    span = display.for_markdown_code("a`b``c")
    assert md.render(span).strip() == "<p><code>a`b``c</code></p>"


def test_html_value_is_escaped_with_quotes():
    assert display.for_html("<img src=x onerror=alert(1)>\"'") == \
        "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;"
    assert display.for_html("a\x1bb") == "a\\x1bb"


@pytest.mark.parametrize("raw, cell", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1", "'+1"), ("-1", "'-1"),
    ("@SUM(1+1)", "'@SUM(1+1)"), ("\t=1", "\\x09=1"), ("\r=1", "\\x0d=1"),
    ("a\x00b", "a\\x00b"), ("www.example.com", "www.example.com"),
])
def test_csv_cell_never_starts_a_formula_nor_holds_a_control(raw, cell):
    assert display.for_csv(raw) == cell


def test_comment_fits_the_pcapng_option_and_says_what_was_cut():
    c = display.for_comment("\ufffd" * 22000, 1000)
    assert len(c.encode()) <= 1000 and c.endswith("…(22000 characters)")
    assert display.for_comment("a\x00b") == "a\\x00b"


def test_chart_label_is_never_mathtext():
    from tlssniff.output.report import charts

    assert display.for_label("$x^2$") == r"\$x^2\$"
    if charts.available():
        pytest.skip(charts.available())
    svg, _notes = charts.mechanism_mix([("192.0.2.10:443 $x^2$ and $y \x1b[2J", [1, 0, 0, 1, 0, 0]),
                                        ("192.0.2.10:443 " + "a" * 64000, [0, 1, 0, 0, 0, 0])])
    assert svg is not None and "\x1b" not in svg and len(svg) < 200_000
    # matplotlib writes each label into an XML comment too: it cannot close it
    svg, _notes = charts.mechanism_mix([("a --> <script>alert(1)</script>", [1, 0, 0, 0, 0, 0])])
    assert "<script" not in svg and "-->" not in svg.replace(" -->", "")


# -- the corpus --------------------------------------------------------------------------------


def test_shipped_hostile_captures_are_what_the_generator_writes(tmp_path: Path):
    pcap, truth = hostile.write(tmp_path)
    assert pcap.read_bytes() == HOSTILE.read_bytes()
    assert truth.read_text() == (CAPTURES / "hostile" / "truth.jsonl").read_text()


def test_corpus_covers_every_kind_of_attack():
    values = b"".join(hostile.VALUES.values())
    for needle in (b"\x1b]0;", b"\x07", b"\x1b[2J", b"\x1b]8;;", b"[/]", b"[bold red]",
                   b"[link=", b":warning:", b"<img", b"](http", b"# ", b"\r\n", b"=cmd",
                   b"+1", b"-1", b"@SUM", b"\x00", b"\xff", b"\t"):
        assert needle in values, needle
    assert max(len(v) for v in hostile.VALUES.values()) >= 60000


def test_json_and_jsonl_keep_every_hostile_value_exact():
    lines = run_tlssniff("analyze", str(HOSTILE), "-f", "jsonl").stdout.splitlines()
    got = [json.loads(line) for line in lines]
    assert len(got) == len(TRUTH)
    by_client = sorted(got, key=lambda r: r["client"])
    for g, t in zip(by_client, sorted(TRUTH, key=lambda r: r["client"])):
        assert (g["client"], g["sni"], g["alpn"], g["alpn_offered"], g["offered"],
                g["handshake"], g["version"]) == (t["client"], t["sni"], t["alpn"],
                                                   t["alpn_offered"], t["offered"],
                                                   t["handshake"], t["version"]), t["name"]
    doc = json.loads(run_tlssniff("analyze", str(HOSTILE), "-f", "json").stdout)
    assert sorted(c["sni"] for c in doc["connections"]) == sorted(t["sni"] for t in TRUTH)


def _assert_table_shows_names(text: str) -> None:
    for shown in ("\\x1b]0;owned\\x07title.example", "\\x1b[2J\\x1b[Hclear.example", "evil[/]",
                  "[bold red]alarm[/bold red]", ":warning::skull:", "<img src=x onerror=alert(1)>",
                  "\\x0d\\x0a# heading\\x0d\\x0a", "a\\x00b.example", "\\\\x1b.example",
                  "…(64000", "…(22000"):
        assert shown in text, shown


def test_table_on_a_terminal_shows_names_escaped_and_unstyled():
    status, data, err = _run_pty(["analyze", str(HOSTILE), "--no-progress"])
    assert status == 0, err
    _assert_clean(data, "table on a terminal")
    assert b"\x1b[" in data, "rich did not take the pty for a terminal (no styles at all)"
    plain = _RICH_CSI.sub(b"", data).decode()
    _assert_table_shows_names(plain)
    assert "Findings" in plain and "resumption_disabled" in plain
    # no style was made of "[bold red]": the brackets are in the bytes, next to the text
    assert b"[bold red]alarm[/bold red]" in data
    assert b"[link=file:///etc/passwd]x[/li" in data


def test_table_written_to_a_file_holds_no_control_byte(tmp_path: Path):
    out = tmp_path / "table.txt"
    run_tlssniff("analyze", str(HOSTILE), "-o", str(out))
    data = out.read_bytes()
    _assert_clean(data, "-o table file")
    assert b"\x1b" not in data  # not a terminal: no style either
    _assert_table_shows_names(data.decode())


def _check_csv(data: bytes) -> None:
    assert b"\x1b" not in data and b"\x00" not in data and b"\x07" not in data
    # the only CR/LF are the record ends csv writes
    assert b"\r" not in data.replace(b"\r\n", b"") and b"\n" not in data.replace(b"\r\n", b"")
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == len(TRUTH)
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    cells = {r["sni"] for r in rows}
    assert {"'=cmd|' /C calc'!A0", "'+1", "'-1", "'@SUM(1+1)", "\\x09=1", "a\\x00b.example",
            "\\x1b]0;owned\\x07title.example"} <= cells
    long = [c for c in cells if c.startswith("aaaa")]
    assert long == ["a" * 64000]  # a spreadsheet cell holds it: whole, not shortened


def test_csv_to_a_file_and_to_a_terminal_has_no_formula_and_no_control(tmp_path: Path):
    out = tmp_path / "v.csv"
    run_tlssniff("analyze", str(HOSTILE), "-f", "csv", "-o", str(out))
    _check_csv(out.read_bytes())
    status, data, err = _run_pty(["analyze", str(HOSTILE), "-f", "csv", "--no-progress"])
    assert status == 0, err
    _check_csv(data)


def test_error_line_quotes_a_hostile_file_name_escaped(tmp_path: Path):
    name = tmp_path / "x\x1b]0;owned\x07[bold red]y.pcap"
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "analyze", str(name)],
                          capture_output=True, cwd=REPO)
    assert proc.returncode == 2
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr
    assert b"x\\x1b]0;owned\\x07[bold red]y.pcap: no such file" in proc.stderr
    assert proc.stderr.count(b"\n") == 1


def test_capture_file_name_is_escaped_in_csv_and_the_report(tmp_path: Path):
    name = tmp_path / "=cap\x1b[2J<b>.pcap"
    shutil.copy(HOSTILE, name)
    out = tmp_path / "v.csv"
    run_tlssniff("analyze", str(name), "-f", "csv", "-o", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows and all(r["capture"] == display.for_csv(str(name)) for r in rows)
    assert "\\x1b[2J" in rows[0]["capture"]
    bundle = tmp_path / "bundle"
    run_tlssniff("report", str(name), "-o", str(bundle), "--no-verify")
    md = (bundle / "summary.md").read_bytes()
    assert b"\x1b" not in md and b"=cap\\x1b[2J<b>.pcap" in md  # in a code span
    assert b"<b>.pcap" not in (bundle / "report.html").read_bytes()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile-bundle") / "b"
    proc = run_tlssniff("report", str(HOSTILE), "-o", str(out), check=False)
    return proc, out


def test_report_bundle_is_complete(bundle):
    proc, out = bundle
    assert proc.returncode == 0, proc.stderr
    assert not _raw_controls(proc.stderr.encode())
    for name in ("summary.md", "report.html", "summary.json", "handshakes.jsonl",
                 "evidence.pcapng", "provenance.json"):
        assert (out / name).stat().st_size > 0, name
    lines = (out / "handshakes.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["sni"] for x in lines) == sorted(t["sni"] for t in TRUTH)
    summary = json.loads((out / "summary.json").read_text())
    if shutil.which("tshark"):  # the bundle's own cross-check sees no contradiction either
        assert summary["cross_check"]["agree"] is True, summary["cross_check"]
        assert summary["cross_check"]["compared"] == len(TRUTH)


def test_summary_md_neutralises_markdown_html_and_controls(bundle):
    from markdown_it import MarkdownIt

    _, out = bundle
    data = (out / "summary.md").read_bytes()
    _assert_clean(data, "summary.md")
    assert b"\r" not in data
    text = data.decode()
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<img" not in html
    assert 'href="http://x"' not in html and "<a " not in html
    assert "<h1>heading" not in html and "<h1>" not in html.split("</h1>", 1)[1]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "[text](http://x)" in html
    # the findings name the servers, escaped, in headings and bullets
    assert "192.0.2.10:443 \\x1b]0;owned\\x07title.example" in html
    assert "…(64000 characters)" in text


def test_report_html_escapes_every_name(bundle):
    _, out = bundle
    data = (out / "report.html").read_bytes()
    _assert_clean(data, "report.html")
    text = data.decode()
    assert "<img" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "evil[/]" in text and "\\x1b]0;owned\\x07title.example" in text
    assert "…(64000 characters)" in text
    assert len(text) < 2_000_000  # 64 KB names are shortened, not repeated whole


@needs_tshark
def test_evidence_comments_read_back_by_tshark_hold_no_control(bundle):
    _, out = bundle
    proc = subprocess.run(["tshark", "-r", str(out / "evidence.pcapng"), "-Y", "frame.comment",
                           "-T", "fields", "-e", "frame.comment"], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = proc.stdout
    assert not _raw_controls(data), _raw_controls(data)
    lines = [line for line in data.decode().splitlines() if line]
    packets = subprocess.run(["tshark", "-r", str(out / "evidence.pcapng"), "-T", "fields",
                              "-e", "frame.number"], capture_output=True, timeout=120,
                             text=True).stdout.split()
    assert len(lines) == len(packets) > 0  # every packet kept its comment
    by_port = {}
    for line in lines:
        m = re.match(r"tlssniff: 198\.51\.100\.7:(\d+) -> ", line)
        assert m, line[:100]
        by_port[int(m.group(1))] = line
    assert len(by_port) == len(TRUTH)
    nul = [line for line in lines if "a\\x00b.example" in line or "a\\\\x00b.example" in line]
    assert nul and all("offer refused" in line for line in nul)  # the NUL cut nothing
    long = [line for line in lines if "…(64000 characters)" in line]
    assert long and all("offer refused" in line and len(line) < 4000 for line in long)
    assert [line for line in lines if "…(22000 characters)" in line]


@needs_tshark
def test_verify_agrees_on_hostile_names():
    proc = run_tlssniff("verify", str(HOSTILE), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(TRUTH)} connections compared" in proc.stdout
    assert "tshark agrees with every verdict" in proc.stdout


@needs_tshark
def test_verify_contradictions_quote_names_escaped(tmp_path: Path):
    lines = run_tlssniff("analyze", str(HOSTILE), "-f", "jsonl").stdout.splitlines()
    wrong = tmp_path / "v.jsonl"
    with open(wrong, "w") as f:
        for line in lines:
            rec = json.loads(line)
            rec["sni"] = "\x1b]0;lie\x07" + rec["sni"][:50]
            f.write(json.dumps(rec) + "\n")
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "verify", str(HOSTILE),
                           "--verdicts", str(wrong)], capture_output=True, cwd=REPO)
    assert proc.returncode == 4
    assert not _raw_controls(proc.stdout), _raw_controls(proc.stdout)
    assert proc.stdout.count(b": sni: tlssniff \\x1b]0;lie\\x07") == len(TRUTH)
    status, data, err = _run_pty(["verify", str(HOSTILE), "--verdicts", str(wrong)])
    assert status == 4, err
    _assert_clean(data, "verify table on a terminal")
    assert b"Contradictions between tlssniff and tshark" in data


# -- live on loopback against a hostile peer ---------------------------------------------------


def _live_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: live capture on the loopback interface"
    from tlssniff.capture.live import LiveCaptureError, _find_libpcap

    try:
        _find_libpcap()  # live capture's one system requirement
    except LiveCaptureError as err:
        return str(err)
    return None


_LIVE = _live_reason()
PORT = 20413  # this test's port range: 20000-20999


class HostileServer:
    """A plain TCP listener on loopback: reads a hello, answers with a hostile ServerHello
    flight (the ALPN it selects is the client's hostile name), closes."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.answers: dict[int, bytes] = {}  # client port -> server flight
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                want = self.answers.get(addr[1])
                got = b""
                try:
                    while len(got) < 5 or len(got) < _hello_len(got):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    if want is not None:
                        conn.sendall(want)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


def _hello_len(data: bytes) -> int:
    """Bytes of the records that carry the whole first handshake message."""
    if len(data) < 9:
        return 9
    need = 4 + int.from_bytes(data[6:9], "big")
    off, have = 0, 0
    while have < need and off + 5 <= len(data):
        rlen = int.from_bytes(data[off + 3:off + 5], "big")
        have += rlen
        off += 5 + rlen
    return off if have >= need else off + 5


def _hostile_client(server: HostileServer, port: int, value: bytes, rng) -> int:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    cport = s.getsockname()[1]
    alpn = hostile.alpn_name(value)
    server.answers[cport] = hostile.server_flight(alpn, rng)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(hostile.client_hello(value, [alpn, b"h2"], rng.randbytes(160), rng))
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    assert got == server.answers[cport]
    return cport


@pytest.mark.skipif(_LIVE is not None, reason=_LIVE or "")
def test_live_survives_a_hostile_peer_keeps_its_dashboard_and_writes_everything(tmp_path: Path):
    import random

    summary, written = tmp_path / "summary.txt", tmp_path / "live.pcapng"
    master, slave = pty.openpty()
    tty.setraw(slave)
    fcntl_winsize(slave, 50, 160)
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="50")
    errf = open(tmp_path / "live.err", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlssniff", "live", "lo", "--filter", f"tcp port {PORT}",
         "-o", str(summary), "--write", str(written)],
        stdin=slave, stdout=slave, stderr=errf, cwd=REPO, env=env)
    os.close(slave)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                r, _, _ = select.select([master], [], [], 0.1)
                if r:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        return
                    chunks.append(chunk)
                elif proc.poll() is not None:
                    return
            except OSError:
                return

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    server = HostileServer(PORT)
    sent = {}
    try:
        deadline = time.monotonic() + 20
        while b"listening on" not in (tmp_path / "live.err").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "live.err").read_text()
            time.sleep(0.05)
        rng = random.Random(7)
        for name, value in hostile.VALUES.items():
            sent[_hostile_client(server, PORT, value, rng)] = name
        time.sleep(2.5)  # at least two dashboard redraws with every hostile server in them
        assert proc.poll() is None, "live died on the hostile hellos"
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
        reader.join(timeout=10)
        os.close(master)
        errf.close()
    err = (tmp_path / "live.err").read_bytes()
    assert status == 0, err.decode(errors="replace")
    assert not _raw_controls(err), _raw_controls(err)
    dash = b"".join(chunks)
    (tmp_path / "dashboard.bin").write_bytes(dash)  # for a look when this fails
    _assert_clean(dash, "live dashboard")
    assert b"tlssniff live" in dash and b"TLS connections" in dash
    plain = _RICH_CSI.sub(b"", dash)
    for shown in (b"\\x1b]0;owned\\x07title.example", b"[bold red]alarm[/bold red]",
                  b"<img src=x onerror=alert(1)>", b"a\\x00b.example", "…(64000".encode()):
        assert shown in plain, shown  # the hostile servers were on the dashboard, as text
    text = summary.read_bytes()
    _assert_clean(text, "live summary file")
    assert b"\x1b" not in text
    _assert_table_shows_names(text.decode())
    assert b"Captured " in text and b"Wrote " in text
    # the --write file is complete: closed properly and holding every hostile hello exactly
    records = [json.loads(line) for line in run_tlssniff(
        "analyze", str(written), "-f", "jsonl").stdout.splitlines()]
    got = {int(r["client"].rpartition(":")[2]): r for r in records}
    assert set(got) == set(sent)
    for port, name in sent.items():
        value = hostile.VALUES[name]
        assert got[port]["sni"] == hostile.displayed(value), name
        assert got[port]["alpn"] == hostile.displayed(hostile.alpn_name(value)), name
        assert (got[port]["offered"], got[port]["handshake"]) == ("ticket", "full"), name


# -- probe output ------------------------------------------------------------------------------


def test_probe_table_shows_target_names_and_server_reasons_as_text():
    """What a probed server says (its error text, names) and what the user typed are text."""
    from tlssniff.analysis.findings import Finding, Severity
    from tlssniff.probe.engine import MechanismRun, ProbeConfig, ProbeResult
    from tlssniff.probe.report import print_report
    from tlssniff.probe.target import Target

    target = Target("x", "[bold red]h\x1b]0;owned\x07", 443, "127.0.0.1", socket.AF_INET)
    runs = [MechanismRun("id", target, status="unavailable",
                         reason="it answered \x1b[2J[link=file:///etc/passwd]x[/link] evil[/]"),
            MechanismRun("ticket", target, status="not_issued", reason=":warning: \x00")]
    result = ProbeResult(ProbeConfig(targets=["x"], mechanisms=("id", "ticket")), [target], runs)
    found = [Finding("hostile", Severity.ERROR, [target.label], "message evil[/] \x1b]8;;x\x1b\\")]
    out = io.BytesIO()
    console = display.console(file=io.TextIOWrapper(out, encoding="utf-8", write_through=True),
                              force_terminal=True, color_system="standard", width=200)
    print_report(console, result, found)  # a MarkupError before
    data = out.getvalue()
    _assert_clean(data, "probe table")
    plain = _RICH_CSI.sub(b"", data).decode()
    for shown in ("[bold red]h\\x1b]0;owned\\x07:443", "\\x1b[2J[link=file:///etc/passwd]x",
                  ":warning: \\x00", "message evil[/] \\x1b]8;;x\\x1b\\\\"):
        assert shown in plain, shown


def test_fail_under_lines_name_hostile_servers_escaped_and_short():
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "analyze", str(HOSTILE), "-o",
                           os.devnull, "--fail-under", "50%", "--min-handshakes", "1"],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not _raw_controls(proc.stderr), _raw_controls(proc.stderr)
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == len(hostile.VALUES)  # one line per server, no line broken by a CR/LF
    assert any("192.0.2.10:443 \\x1b]0;owned\\x07title.example: 0%" in x for x in lines)
    assert any("…(64000 characters): 0%" in x for x in lines)
    assert max(len(x) for x in lines) < 1000
