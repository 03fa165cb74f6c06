"""The CLI boundary through the installed console script (``tlssniff``), as a user meets it.

Every usage error is one line on stderr, says what was wrong and which ``--help`` to read, and
exits 2; an internal error is the one documented line (exit 1), its traceback only with
``TLSSNIFF_DEBUG=1``; a reader that stops early (``| head -1``) leaves status 0; Ctrl-C is 130.

The script is the one next to the test interpreter (``.venv/bin/tlssniff``). Other installs can
be checked with the same tests: ``TLSSNIFF_SCRIPTS="/tmp/a/bin/tlssniff /tmp/b/bin/tlssniff"``
(``scripts/check-install.sh`` does so for a fresh ``pip install .`` and the oldest typer).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, PUBLIC, REPO

DEMO = CAPTURES / "demo.pcapng"
TLS12 = PUBLIC / "zeek" / "tls" / "tls1.2.pcap"


def _scripts() -> list[str]:
    extra = os.environ.get("TLSSNIFF_SCRIPTS", "").split()
    here = Path(sys.executable).parent / "tlssniff"
    found = ([str(here)] if here.exists() else []) + extra
    return list(dict.fromkeys(found))


SCRIPTS = _scripts()
needs_script = pytest.mark.skipif(not SCRIPTS, reason="no tlssniff console script installed "
                                  "next to this interpreter (make setup installs it)")


def _env(script: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TLSSNIFF_DEBUG", "COLUMNS")}
    if Path(script).parent != Path(sys.executable).parent:
        env.pop("PYTHONPATH", None)  # another install: its own copy of tlssniff
    env.update(extra)
    return env


def _run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120,
                          env=_env(script, **env), cwd=REPO)


BAD_USAGE = [
    # (arguments, what the one line must say)
    ([], "missing command"),
    (["analyse", str(DEMO)], "did you mean 'analyze'?"),
    (["anlyze"], "did you mean 'analyze'?"),
    (["frobnicate"], "no such command 'frobnicate'"),
    (["analyze"], "Missing argument"),
    (["report", str(DEMO)], "'--output'"),
    (["verify"], "Missing argument"),
    (["live"], "Missing argument"),
    (["probe"], "Missing argument"),
    (["analyze", "--nope", str(DEMO)], "--nope"),
    (["--nope"], "--nope"),
    (["analyze", str(DEMO), "--jobs", "abc"], "'--jobs'"),
    (["analyze", str(DEMO), "--jobs", "-1"], "'--jobs'"),
    (["analyze", str(DEMO), "-f", "xml"], "'--format'"),
    (["analyze", str(DEMO), "-f"], "-f"),
    (["analyze", str(DEMO), "--max-flows", "0"], "'--max-flows'"),
    (["analyze", str(DEMO), "--max-flows", "-5"], "'--max-flows'"),
    (["analyze", str(DEMO), "--max-buffer", "-1"], "'--max-buffer'"),
    (["analyze", str(DEMO), "--max-buffer", "lots"], "'--max-buffer'"),
    (["analyze", str(DEMO), "--max-pending-memory", "1"], "minimum 1M"),
    (["analyze", str(DEMO), "--idle-timeout", "0"], "'--idle-timeout'"),
    (["analyze", str(DEMO), "--idle-timeout", "-3"], "'--idle-timeout'"),
    (["analyze", str(DEMO), "--fail-under", "150%"], "above 100%"),
    (["analyze", str(DEMO), "--fail-under", "1.5"], "ambiguous"),
    (["analyze", str(DEMO), "--fail-under", "2"], "ambiguous"),
    (["analyze", str(DEMO), "--fail-under", "-0.1"], "'--fail-under'"),
    (["analyze", str(DEMO), "--fail-under", "nan"], "'--fail-under'"),
    (["analyze", str(DEMO), "--fail-under", "eighty"], "'--fail-under'"),
    (["analyze", str(DEMO), "--min-handshakes", "0"], "'--min-handshakes'"),
    (["analyze", "/nonexistent/x.pcap"], "no such file"),
    (["report", str(DEMO), "-o", "/tmp/x", "--fail-under", "101%"], "above 100%"),
    (["report", str(DEMO), "-o", "/tmp/x", "--max-pending-memory", "10K"], "minimum 1M"),
    (["live", "lo", "--fail-under", "2"], "ambiguous"),
    (["live", "lo", "--max-pending-memory", "1"], "minimum 1M"),
    (["live", "lo", "--count", "0"], "'--count'"),
    (["live", "lo", "--duration", "soon"], "'--duration'"),
    (["live", "lo", "-f", "json"], "'--format'"),
    (["live", "nosuch0", "--count", "1"], "no such interface"),
    (["probe", "127.0.0.1:1", "--fail-under", "2"], "ambiguous"),
    (["probe", "127.0.0.1:1", "-m", "nope"], "--mechanism"),
    (["verify", str(DEMO), "-f", "xml"], "--format"),
]


@needs_script
@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args,needle", BAD_USAGE, ids=[" ".join(a) or "bare" for a, _ in BAD_USAGE])
def test_bad_usage_is_one_line_and_status_2(script, args, needle):
    proc = _run(script, *args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tlssniff: error: "), lines[0]
    assert needle in lines[0], lines[0]
    if "no such file" not in needle:  # an unreadable input: no help would help
        assert re.search(r"see 'tlssniff( \w+)? --help'", lines[0]), lines[0]


@needs_script
@pytest.mark.parametrize("script", SCRIPTS)
def test_values_people_type_are_taken(script):
    """The documented spellings: 80%, 0.8, 1 (100%), 64M, 1G, 5m."""
    for extra in (["--fail-under", "0%"], ["--fail-under", "0.0"], ["--fail-under", "1"],
                  ["--max-pending-memory", "64M"], ["--max-pending-memory", "1G"],
                  ["--max-buffer", "1M"], ["--idle-timeout", "5m"], ["--jobs", "0"]):
        proc = _run(script, "analyze", str(TLS12), "-f", "jsonl", "--min-handshakes", "1", *extra)
        # --fail-under 1 (100%) on a server that never resumes: status 3; the others pass.
        want = 3 if extra == ["--fail-under", "1"] else 0
        assert proc.returncode == want, (extra, proc.returncode, proc.stderr)


@needs_script
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_status_0_and_fits_80_columns(script):
    for args in ([], ["analyze"], ["live"], ["report"], ["verify"], ["probe"]):
        proc = _run(script, *args, "--help", COLUMNS="80")
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert max(len(line) for line in lines) <= 80, args
        text = proc.stdout
        # Examples come out whole, on one line each, ready to copy.
        from tlssniff.cli import app

        cmd = args[0] if args else None
        for info in app.registered_commands:
            if cmd and (info.name or info.callback.__name__) == cmd:
                doc = info.callback.__doc__ or ""
                for example in re.findall(r"^\s+(tlssniff .+)$", doc, re.M):
                    assert any(line.strip().strip("│").strip() == example for line in lines), \
                        (cmd, example, text)


@needs_script
def test_version_is_status_0():
    proc = _run(SCRIPTS[0], "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("tlssniff "), proc


def _sitecustomize(tmp_path: Path, body: str) -> dict[str, str]:
    """An interpreter hook that breaks tlssniff on purpose, for the paths a bug would take."""
    (tmp_path / "sitecustomize.py").write_text(body)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


@needs_script
def test_internal_error_is_one_line_and_status_1(tmp_path):
    env = _sitecustomize(tmp_path, (
        "import tlssniff.output.table as t\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('boom\\x1b[2J\\nsecond line')\n"
        "t.print_report = boom\n"
        "import tlssniff.cli as c\n"
        "c.print_report = boom\n"))
    script = SCRIPTS[0]
    proc = _run(script, "analyze", str(TLS12), **env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tlssniff: internal error: RuntimeError: boom\\x1b[2J\\x0asecond"), \
        lines[0]
    assert "TLSSNIFF_DEBUG=1" in lines[0] and "\x1b" not in proc.stderr
    proc = _run(script, "analyze", str(TLS12), TLSSNIFF_DEBUG="1", **env)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "RuntimeError" in proc.stderr


@needs_script
@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "ecs", "table"])
def test_reader_that_stops_early_is_status_0(fmt, unbuffered):
    """``tlssniff analyze ... | head -1``: the run ends quietly, with status 0, whether
    Python's own streams write through (PYTHONUNBUFFERED, as in many container images) or
    not: the output's own buffer (output/files.py block_buffered) meets the closed pipe."""
    script = SCRIPTS[0]
    env = _env(script)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    proc = subprocess.Popen([script, "analyze", *[str(DEMO)] * 30, "-f", fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    assert first
    assert status == 0, err
    assert err == "", err


@needs_script
def test_ctrl_c_is_status_130(tmp_path):
    marker = tmp_path / "running"
    env = _sitecustomize(tmp_path, (
        "import time, tlssniff.engine.parallel as p\n"
        "real = p.analyze_captures\n"
        "def slow(*a, **k):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "    return real(*a, **k)\n"
        "import tlssniff.run.offline as c\n"
        "c.analyze_captures = slow\n"))
    script = SCRIPTS[0]
    # Ctrl-C as a terminal delivers it: a job a shell started in the background (a CI runner,
    # nohup) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt at all.
    proc = subprocess.Popen([script, "analyze", str(TLS12)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(script, **env), cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err


def test_unsupported_link_type_is_said(tmp_path):
    """Frames of a link type the decoder does not read: a warning naming it, not silence."""
    data = bytearray(TLS12.read_bytes())
    data[20:24] = (147).to_bytes(4, "little")  # LINKTYPE_USER0
    p = tmp_path / "user0.pcap"
    p.write_bytes(bytes(data))
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "analyze", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "link type 147 are not supported" in proc.stderr, proc.stderr
    assert "No TLS handshakes found" in proc.stdout
