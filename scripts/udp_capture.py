"""tcpdump on loopback with any filter (make_captures.Tcpdump is TCP-only), for the QUIC and
STARTTLS capture scripts."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from make_captures import CaptureFailed, stop

TIMEOUT = 10.0


class Tcpdump:
    def __init__(self, path: Path, bpf: str):
        self.path = path
        self.filter = bpf
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Tcpdump":
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-Z", "root",
             "-w", str(self.path), self.filter],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + TIMEOUT
        line = b""
        while b"listening on" not in line:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                stop(self.proc, signal.SIGKILL)
                raise CaptureFailed(f"tcpdump did not start: {line!r}")
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        stop(self.proc, signal.SIGINT)
        if self.proc.stderr is not None:
            log = self.proc.stderr.read()
            self.proc.stderr.close()
            if exc[0] is None and b"0 packets dropped by kernel" not in log:
                raise CaptureFailed(f"tcpdump dropped packets: {log!r}")
