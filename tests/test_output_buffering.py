"""Standard output through its own 1 MB buffer (output/files.py ``block_buffered``).

Python makes standard output write through where PYTHONUNBUFFERED is set: one write(2) per
verdict line. These check that the buffered stream writes in large blocks, loses nothing,
leaves the stream it wraps open and in order, and keeps a terminal line by line.
"""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys

import pytest

from tests.conftest import CAPTURES, REPO
from tlssniff.output.files import OUTPUT_BUFFER, block_buffered


def _unbuffered_stdout(path) -> io.TextIOWrapper:
    """A stream as ``python -u`` makes standard output: text straight onto the raw file."""
    return io.TextIOWrapper(io.FileIO(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                      "w"), encoding="utf-8", write_through=True)


def test_lines_wait_in_the_buffer_and_all_arrive(tmp_path):
    path = tmp_path / "out.jsonl"
    stream = _unbuffered_stdout(path)
    stream.write("before\n")
    line = '{"sni": "\\u001b[31mred"}\n'
    count = OUTPUT_BUFFER // len(line) // 2  # half the buffer: nothing written yet
    with block_buffered(stream) as out:
        assert out is not stream
        for _ in range(count):
            out.write(line)
        assert path.read_text() == "before\n"
    stream.write("after\n")
    stream.close()
    assert path.read_text() == "before\n" + line * count + "after\n"


def test_a_full_buffer_is_one_write(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    stream = _unbuffered_stdout(path)
    sizes: list[int] = []

    class Counting(io.FileIO):
        def write(self, b):  # type: ignore[override]
            sizes.append(len(b))
            return super().write(b)

    monkeypatch.setattr(io, "FileIO", Counting)
    with block_buffered(stream) as out:
        for _ in range(10_000):
            out.write("x" * 1000 + "\n")
    monkeypatch.undo()
    stream.close()
    assert path.stat().st_size == 10_010_000
    # 10 MB in ~1 MB writes, not 10,000 line writes.
    assert 9 <= len(sizes) <= 12, sizes


def test_a_pipe_gets_smaller_blocks():
    """A reader at the end of a pipe sees lines 64 KB at a time, not only at 1 MB."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)  # room for every write: none blocks
    stream = io.TextIOWrapper(io.FileIO(write_end, "w"), encoding="utf-8", write_through=True)
    os.set_blocking(read_end, False)
    try:
        with block_buffered(stream) as out:
            for _ in range(100):
                out.write("x" * 1023 + "\n")  # 100 KB: past one 64 KB block
            first = os.read(read_end, 1 << 20)
            assert 0 < len(first) < 100 * 1024
        rest = os.read(read_end, 1 << 20)
        assert len(first) + len(rest) == 100 * 1024
    finally:
        stream.close()
        os.close(read_end)


def test_a_terminal_keeps_its_stream():
    controller, terminal = os.openpty()
    stream = io.TextIOWrapper(io.FileIO(terminal, "w"), encoding="utf-8", line_buffering=True)
    try:
        with block_buffered(stream) as out:
            assert out is stream
    finally:
        stream.close()
        os.close(controller)


def test_a_stream_without_a_descriptor_is_used_as_it_is():
    stream = io.StringIO()
    with block_buffered(stream) as out:
        out.write("line\n")
    assert out is stream and stream.getvalue() == "line\n"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_analyze_with_pythonunbuffered_gives_the_same_bytes(tmp_path, jobs):
    """The whole command, PYTHONUNBUFFERED set and not, onto a file: the same output."""
    outputs = []
    for unbuffered in ("1", ""):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        if unbuffered:
            env["PYTHONUNBUFFERED"] = unbuffered
        dest = tmp_path / f"out{unbuffered or 0}.csv"
        with open(dest, "wb") as f:
            proc = subprocess.run([sys.executable, "-m", "tlssniff", "analyze",
                                   str(CAPTURES / "demo.pcapng"), "-f", "csv", "--jobs", jobs],
                                  stdout=f, stderr=subprocess.PIPE, env=env, cwd=REPO,
                                  timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        outputs.append(dest.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(b"ts,client,server,")
    assert outputs[0].count(b"\n") > 10
