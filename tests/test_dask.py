"""analyze --dask: a real `dask scheduler` and two `dask worker` processes on loopback; the output
equals the local run, and a worker killed mid-run loses nothing and counts nothing twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, PUBLIC, REPO, run_tlssniff

distributed = pytest.importorskip("distributed")

# This suite's ports: scheduler 26700, workers 26710-26719 (no dashboards, no nannies).
SCHEDULER_PORT = 26700
WORKER_PORTS = (26710, 26711)
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]

TLS = [CAPTURES / "demo.pcapng", CAPTURES / "nginx.pcap", CAPTURES / "openssl-tls12.pcap",
       CAPTURES / "openssl-tls13.pcap", CAPTURES / "python-ssl.pcapng",
       CAPTURES / "partitions" / "sid-refused-tls13-client.pcap",
       *sorted((PUBLIC / "zeek" / "tls").glob("*.pcap"))]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Cluster:
    def __init__(self, tmp: Path):
        self.address = f"tcp://127.0.0.1:{SCHEDULER_PORT}"
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.logs = tmp
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}

    def start(self) -> Cluster:
        for port in (SCHEDULER_PORT, *WORKER_PORTS):
            if not _free(port):
                pytest.skip(f"port {port} in use")
        self.scheduler = self._spawn("scheduler", [*DASK, "--host", "127.0.0.1", "--port",
                                                   str(SCHEDULER_PORT), "--no-dashboard"])
        for i, port in enumerate(WORKER_PORTS):
            addr = f"tcp://127.0.0.1:{port}"
            self.workers[addr] = self._spawn(f"worker{i}", [
                *WORKER, self.address, "--host", "127.0.0.1", "--worker-port", str(port),
                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"])
        with distributed.Client(self.address, timeout=60, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
        return self

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        return subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    try:
        yield c.start()
    finally:
        c.stop()


def test_dask_output_equals_the_local_run(cluster):
    """Every format, on the repository's TLS captures together (one task per capture) and on
    one capture split into partitions over both workers."""
    args = [str(p) for p in TLS]
    for fmt in ("jsonl", "json", "table"):
        local = run_tlssniff("analyze", *args, "-f", fmt, "-q").stdout
        remote = run_tlssniff("analyze", *args, "-f", fmt, "-q", "--dask", cluster.address).stdout
        assert remote == local, fmt
        assert local.count("\n") > 50
    one = str(CAPTURES / "demo.pcapng")
    for fmt in ("jsonl", "json"):
        local = run_tlssniff("analyze", one, "-f", fmt, "-q").stdout
        for jobs in ("0", "3"):
            remote = run_tlssniff("analyze", one, "-f", fmt, "-q", "--dask", cluster.address,
                                  "--jobs", jobs).stdout
            assert remote == local, (fmt, jobs)
    # A partition that reaches its share of a limit (3 flows each of --max-flows 10): the
    # capture again as one task, with the aggregate when the format reads it.
    for fmt in ("jsonl", "json"):
        local = run_tlssniff("analyze", one, "-f", fmt, "-q", "--max-flows", "10").stdout
        remote = run_tlssniff("analyze", one, "-f", fmt, "-q", "--max-flows", "10", "--dask",
                              cluster.address, "--jobs", "3").stdout
        assert remote == local, (fmt, "evicted")


def test_a_worker_killed_mid_run_loses_nothing(cluster, tmp_path):
    """kill -9 a worker while it runs a task: the scheduler gives the task to the other worker,
    and the merged output (lines and counters) is exactly the local run's."""
    from tlssniff.testing.generate import generate

    cap = tmp_path / "gen.pcap"
    generate(cap, tmp_path / "gen.truth.jsonl", 3000, seed=7, bulk_bytes=0, bulk_share=0.0,
             rate=2000.0, idle_mean=0.2, pool=10)
    local = run_tlssniff("analyze", str(cap), "-f", "json", "-q").stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlssniff", "analyze", str(cap), "-f", "json", "-q", "--dask",
         cluster.address, "--jobs", "8"],
        cwd=REPO, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed = None
    with distributed.Client(cluster.address, timeout=30, set_as_default=False) as c:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            busy = {w: ts for w, ts in c.processing().items() if ts}
            for addr in busy:
                if addr in cluster.workers and len(busy) == 2:
                    time.sleep(0.3)  # into the task
                    cluster.workers[addr].send_signal(signal.SIGKILL)
                    cluster.workers[addr].wait()
                    killed = addr
                    break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=600)
        alive = list(c.scheduler_info()["workers"])
    assert killed is not None, "no task was running on both workers"
    assert proc.returncode == 0, err.decode()
    assert killed not in alive and len(alive) == 1
    got, want = json.loads(out), json.loads(local)
    assert got["connections"] == want["connections"]
    assert got == want
    assert len(want["connections"]) == 3000
