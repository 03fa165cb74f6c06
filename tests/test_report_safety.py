"""Files tlssniff writes are safe to write as root, and private: no symbolic link or hard link
followed (report bundle, `analyze -o`, `live -o/--write`), 0600 files and 0700 directories, a
bundle directory of another user refused, a non-empty one replaced only with --force; tshark
never runs as root; --anonymize and --redact leave nothing of what they promise to hide in any
file of the bundle (IPv4 and IPv6, text and packed bytes)."""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.bundles import make_bundle, pcapng_packets, verify_evidence
from tlssniff.capture.decode import PAYLOAD, decode_frame
from tests.conftest import CAPTURES, analyze_jsonl, run_tlssniff

DEMO = str(CAPTURES / "demo.pcapng")
DIAG = CAPTURES / "diagnostics"
FILES = {"summary.md", "report.html", "summary.json", "handshakes.jsonl", "evidence.pcapng",
         "provenance.json"}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, tshark as nobody)")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
PORTS = "tcp port 22443"  # live: this file's own port (nothing listens there)


def _one_line_error(proc, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert err.startswith("tlssniff: error: ") and "\n" not in err, err
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in err, err


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


# -- the bundle directory ---------------------------------------------------------------------


def test_bundle_is_private(tmp_path):
    out = tmp_path / "a" / "b"
    make_bundle(out, DEMO, "--no-verify")
    assert _mode(out) == 0o700
    names = {p.name for p in out.iterdir()}
    assert names == FILES  # no temporary file left behind
    for p in out.iterdir():
        assert p.is_file() and not p.is_symlink()
        assert _mode(p) == 0o600, (p.name, oct(_mode(p)))


def test_non_empty_bundle_needs_force(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = run_tlssniff("report", DEMO, "--no-verify", "-o", str(out), check=False)
    _one_line_error(proc, str(out), "--force")
    assert {p.name for p in out.iterdir()} == {"notes.txt"}  # refused before anything
    make_bundle(out, DEMO, "--no-verify", "--force")
    assert {p.name for p in out.iterdir()} == FILES | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"
    # a second run over the bundle needs --force too
    proc = run_tlssniff("report", DEMO, "--no-verify", "-o", str(out), check=False)
    _one_line_error(proc, "--force")


def test_symlinks_planted_in_the_bundle_are_replaced_not_followed(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    victims = {}
    for name in FILES:
        victim = tmp_path / f"victim-{name}"
        victim.write_text("precious")
        victims[name] = victim
        (out / name).symlink_to(victim)
    (out / "dangling").symlink_to(tmp_path / "nowhere")
    make_bundle(out, DEMO, "--force")
    for name, victim in victims.items():
        assert victim.read_text() == "precious", name
        assert (out / name).is_file() and not (out / name).is_symlink(), name
        assert _mode(out / name) == 0o600
    assert not (tmp_path / "nowhere").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["handshakes_jsonl"] == 40


def test_bundle_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = run_tlssniff("report", DEMO, "-o", str(f), check=False)
    _one_line_error(proc, "not a directory")
    assert f.read_text() == "x"


@as_root
def test_bundle_dir_of_another_user_is_refused(tmp_path):
    nobody = pwd.getpwnam("nobody")
    for content in (False, True):
        out = tmp_path / f"theirs-{content}"
        out.mkdir()
        if content:
            (out / "summary.md").symlink_to("/etc/passwd")
        os.chown(out, nobody.pw_uid, nobody.pw_gid)
        before = sorted(os.listdir(out))
        for extra in ((), ("--force",)):
            proc = run_tlssniff("report", DEMO, "--no-verify", *extra, "-o", str(out),
                                check=False)
            _one_line_error(proc, str(out), "nobody")
            assert sorted(os.listdir(out)) == before


# -- analyze -o and live -o/--write -----------------------------------------------------------


def test_analyze_output_refuses_links(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    for fmt in ("table", "jsonl", "csv"):
        proc = run_tlssniff("analyze", DEMO, "-f", fmt, "-o", str(link), check=False)
        _one_line_error(proc, "symbolic link")
    assert victim.read_text() == "precious"
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "created-through-link")
    _one_line_error(run_tlssniff("analyze", DEMO, "-o", str(dangling), check=False),
                    "symbolic link")
    assert not (tmp_path / "created-through-link").exists()
    hard = tmp_path / "hard.txt"
    os.link(victim, hard)
    _one_line_error(run_tlssniff("analyze", DEMO, "-o", str(hard), check=False), "hard link")
    assert victim.read_text() == "precious"


def test_analyze_output_is_private_and_truncated(tmp_path):
    out = tmp_path / "v.jsonl"
    out.write_text("x" * 1_000_000)
    out.chmod(0o644)
    run_tlssniff("analyze", DEMO, "-f", "jsonl", "-o", str(out))
    lines = out.read_text().splitlines()
    assert len(lines) == 40 and all(json.loads(line)["client"] for line in lines)
    assert _mode(out) == 0o600
    new = tmp_path / "new.txt"
    run_tlssniff("analyze", DEMO, "-o", str(new))
    assert _mode(new) == 0o600 and "127.0.0.1:44331" in new.read_text()
    run_tlssniff("analyze", DEMO, "-f", "jsonl", "-o", os.devnull)  # devices are fine


@as_root
def test_analyze_output_of_another_user_is_refused_as_root(tmp_path):
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("theirs")
    nobody = pwd.getpwnam("nobody")
    os.chown(theirs, nobody.pw_uid, nobody.pw_gid)
    _one_line_error(run_tlssniff("analyze", DEMO, "-o", str(theirs), check=False), "nobody")
    assert theirs.read_text() == "theirs"


@as_root
@pytest.mark.parametrize("option", ["--write", "-o"])
def test_live_outputs_refuse_links_before_the_privilege_drop(tmp_path, option):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out"
    link.symlink_to(victim)
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "live", "lo", "--filter", PORTS,
                           "--duration", "5", option, str(link)], capture_output=True,
                          text=True, timeout=60)
    _one_line_error(proc, "symbolic link")
    assert victim.read_text() == "precious"


@as_root
def test_live_write_file_is_private(tmp_path):
    out = tmp_path / "ev.pcapng"
    summary = tmp_path / "summary.txt"
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "live", "lo", "--filter", PORTS,
                           "--duration", "1", "--write", str(out), "-o", str(summary)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _mode(out) == 0o600 and _mode(summary) == 0o600
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_open_output_and_output_dir_directly(tmp_path):
    from tlssniff.errors import UsageError
    from tlssniff.output.files import OutputDir, open_output

    d = tmp_path / "dir"
    d.mkdir()
    with pytest.raises(UsageError, match="Is a directory"):
        open_output(d, "w")
    with OutputDir(tmp_path / "new") as od:
        with od.open("x.bin", "wb") as f:
            f.write(b"abc")
        with pytest.raises(RuntimeError):
            with od.open("y.txt") as f:
                f.write("half")
                raise RuntimeError("interrupted")
        assert od.names() == ["x.bin"]  # the half-written file is gone, no temp file left
        import hashlib

        assert od.files["x.bin"] == (3, hashlib.sha256(b"abc").hexdigest())


# -- tshark never runs as root ----------------------------------------------------------------


@as_root
@needs_tshark
def test_tshark_runs_as_nobody(tmp_path):
    """A wrapper named tshark first on PATH records the uid it runs as, for `verify` and for
    the report's cross-check; the capture (a 0600 file in a 0700 directory) is still read."""
    real = shutil.which("tshark")
    bindir = Path(tempfile.mkdtemp(prefix="tlssniff-tshark-"))
    try:
        bindir.chmod(0o755)
        log = bindir / "uids"
        log.write_text("")
        log.chmod(0o666)
        wrapper = bindir / "tshark"
        wrapper.write_text(f"#!/bin/sh\nid -u >> {log}\nid -G >> {log}\nexec {real} \"$@\"\n")
        wrapper.chmod(0o755)
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        cap = private / "cap.pcap"
        shutil.copy(CAPTURES / "openssl-tls12.pcap", cap)
        cap.chmod(0o600)
        env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
        proc = subprocess.run([sys.executable, "-m", "tlssniff", "verify", str(cap)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "agrees with every verdict" in proc.stdout
        out = tmp_path / "b"
        proc = subprocess.run([sys.executable, "-m", "tlssniff", "report", str(cap), "-o",
                               str(out)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["cross_check"]["ran"] and summary["cross_check"]["agree"]
        nobody = pwd.getpwnam("nobody")
        lines = log.read_text().split()
        assert len(lines) >= 4
        uids, groups = lines[0::2], lines[1::2]
        assert set(uids) == {str(nobody.pw_uid)}, uids
        assert set(groups) == {str(nobody.pw_gid)}, groups
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


# -- --anonymize and --redact -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ipv6_capture(tmp_path_factory) -> Path:
    """Real TLS 1.2/1.3 handshakes (Python's ssl) of clients on IPv4 and IPv6: session ids,
    tickets with key names, PSKs (tlssniff.testing.generate, fixed seed)."""
    from tlssniff.testing.generate import generate

    d = tmp_path_factory.mktemp("v6")
    cap = d / "mixed-v6.pcap"
    generate(cap, d / "mixed-v6.truth.jsonl", 80, seed=7, servers=3, ipv6_share=0.5)
    return cap


def _text_forms(ip: str) -> set[bytes]:
    a = ipaddress.ip_address(ip)
    forms = {a.compressed, a.exploded, str(a).upper()}
    if a.version == 6:
        forms |= {f"[{f}]" for f in list(forms)}
    return {f.encode() for f in forms}


SECRET_FIELDS = ("session_id", "issued_session_id", "ticket_hash", "issued_ticket_hash",
                 "psk_identity_hash", "ticket_key_name", "issued_ticket_key_name")


def _ip_addresses(frame: bytes) -> tuple[bytes, bytes]:
    """The source and destination address fields of an Ethernet frame's IPv4 or IPv6 header."""
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00":
        return frame[26:30], frame[30:34]
    assert ethertype == b"\x86\xdd", ethertype.hex()
    return frame[22:38], frame[38:54]


def test_anonymize_and_redact_hide_everything_promised(tmp_path, ipv6_capture):
    caps = [ipv6_capture, DIAG / "cluster-separate-keys.pcap"]
    out = tmp_path / "b"
    make_bundle(out, *map(str, caps), "--anonymize", "--redact")
    records = [r for c in caps for r in analyze_jsonl(c)]
    clients = {r["client"].rpartition(":")[0].strip("[]") for r in records}
    servers = {r["server"].rpartition(":")[0].strip("[]") for r in records}
    hidden = clients - servers
    assert any(":" in ip for ip in hidden) and any("." in ip for ip in hidden)
    secrets = {r[k] for r in records for k in SECRET_FIELDS if r.get(k)}
    key_names = {r[k] for r in records for k in ("ticket_key_name", "issued_ticket_key_name")
                 if r.get(k)}
    assert key_names and any(r.get("session_id") for r in records)
    # the key names are in the findings' text of this capture: the case that leaked
    plain = tmp_path / "plain"
    make_bundle(plain, *map(str, caps), "--no-verify", verify=False)
    assert any(k.encode() in (plain / "summary.md").read_bytes() for k in key_names)
    raw_values = {bytes.fromhex(r[k]) for r in records
                  for k in ("session_id", "issued_session_id", "ticket_key_name",
                            "issued_ticket_key_name") if r.get(k)}
    text_needles = {f for ip in hidden for f in _text_forms(ip)} \
        | {s.encode() for s in secrets} | {s.upper().encode() for s in secrets}
    packed = {socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
              for ip in hidden}
    assert {p.name for p in out.iterdir()} == FILES
    for f in out.iterdir():
        data = f.read_bytes()
        for needle in text_needles:
            assert needle not in data, (f.name, needle)
        if f.name == "evidence.pcapng":
            packets = pcapng_packets(f)
            assert packets
            for frame, comments in packets:
                # The addresses are rewritten in the IP headers, not in what the packets carry:
                # a server's certificate may name any address (this capture's names 127.0.0.1,
                # which is also a client of cluster-separate-keys.pcap), so the packed addresses
                # are looked for in the IP address fields, the raw session values in the whole
                # frame. Not in the whole header: the rewritten addresses change the TCP
                # checksum, which with the urgent pointer and a NOP once read 7f 00 00 01.
                payload = decode_frame(1, frame)[PAYLOAD]  # both captures are Ethernet
                assert frame.endswith(payload)
                for address in _ip_addresses(frame):
                    assert address not in packed, ("frame", address.hex())
                for needle in raw_values:
                    assert needle not in frame, ("frame", needle.hex())
                for c in comments:
                    for needle in text_needles:
                        assert needle not in c, ("comment", needle)
        else:
            for needle in raw_values | {p for p in packed if len(p) == 16}:
                assert needle not in data, (f.name, needle.hex())
    # what the bundle says still holds together: pseudonyms and keyed hashes everywhere
    summary = json.loads((out / "summary.json").read_text())
    assert summary["findings"] and any("r:" in json.dumps(f) for f in summary["findings"])
    md = (out / "summary.md").read_text()
    assert "r:" in md


def test_anonymize_keeps_verdicts_of_ipv6_clients(tmp_path, ipv6_capture):
    out = tmp_path / "b"
    make_bundle(out, str(ipv6_capture), "--anonymize")
    got = analyze_jsonl(out / "evidence.pcapng")
    jsonl = [json.loads(line) for line in (out / "handshakes.jsonl").read_text().splitlines()]
    assert any(r["client"].startswith("[fd") for r in got)
    assert {(r["client"], r["server"], r["handshake"], r["offered"]) for r in got} <= {
        (r["client"], r["server"], r["handshake"], r["offered"]) for r in jsonl}


def test_verify_on_the_evidence_of_the_demo(tmp_path):
    """evidence.pcapng carries packet comments (that once crashed the tshark reader)."""
    out = tmp_path / "demo"
    make_bundle(out, DEMO, verify=False)
    assert all(c for _, c in pcapng_packets(out / "evidence.pcapng"))
    verify_evidence(out)
