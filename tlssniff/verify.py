"""An independent cross-check of tlssniff's verdicts by Wireshark's TLS dissector.

tshark dissects the same capture on its own (its ``-T ek`` output of a few TLS fields): its
TLS dissector, its TCP reassembly, its idea of which packets are TLS. For every TCP connection
where tshark sees a ClientHello, the hello fields it reports are compared with what tlssniff
concluded, and every *contradiction* is listed: a case where tshark's fields prove tlssniff's verdict wrong.

What is compared (tshark's fields -> the verdict field they contradict):

* ``sni``: the server_name of the first ClientHello.
* ``version``: the negotiated version: the ServerHello's supported_versions, else its
  legacy_version.
* ``offered``: the last ClientHello carries pre_shared_key (``psk``), else a non-empty
  session_ticket extension (``ticket``); a non-empty session id is an offer (``session_id``)
  when the client did not offer TLS 1.3 and TLS <= 1.2 was negotiated. tlssniff claiming an
  offer tshark does not see is a contradiction too.
* ``handshake``: TLS 1.3: pre_shared_key in the final ServerHello is resumption (``psk``), its
  absence a full handshake. TLS <= 1.2: the server's next plaintext message after ServerHello
  is Certificate / ServerKeyExchange / CertificateRequest / ServerHelloDone (full) or
  ChangeCipherSpec / NewSessionTicket (resumed). Where tshark sees neither, nothing is claimed.
* ``connection``: a ClientHello tshark dissects on a connection tlssniff does not report.

tshark parses the untrusted capture, so when tlssniff runs as root it runs tshark as
:data:`TSHARK_USER` (``nobody``, no supplementary groups) and gives it the capture on its
standard input, opened by tlssniff: tshark needs no permission on the file (a 0600
``evidence.pcapng`` included). Strings come as tshark decodes them (JSON).

Connections tshark does not dissect as TLS (STARTTLS on unusual ports, QUIC and DTLS, which
this check does not cover) are counted as *not checked*, never as contradictions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field

from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.errors import ExitCode, TlssniffError
from tlssniff.tls.wire import HRR_RANDOM

_HRR_RANDOM = HRR_RANDOM.hex()  # tshark prints the random as colon-separated hex
_FULL_NEXT = {11, 12, 13, 14}  # Certificate, ServerKeyExchange, CertificateRequest, SHDone
_RESUMED_NEXT = {4}  # NewSessionTicket (TLS <= 1.2, before the server's ChangeCipherSpec)
_VERSIONS = {"SSLv3": 0x0300, "TLSv1.0": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303,
             "TLSv1.3": 0x0304}
_DISPLAY_FILTER = "tls.handshake.type or tls.record.content_type == 20"


class TsharkMissing(TlssniffError):
    """tshark is not installed (or cannot be run safely): the cross-check cannot run."""

    exit_code = 2


class TsharkFailed(TlssniffError):
    """tshark ran and failed on the capture (not a capture it can read, a crash)."""

    exit_code = ExitCode.USAGE


@dataclass(slots=True)
class Contradiction:
    client: str
    server: str
    field: str  # sni, version, offered, handshake, connection
    tlssniff: str | None
    tshark: str | None
    frames: list[int] = field(default_factory=list)  # tshark's frame numbers of the hellos
    capture: str | None = None

    def to_dict(self) -> dict:
        return {"client": self.client, "server": self.server, "field": self.field,
                "tlssniff": self.tlssniff, "tshark": self.tshark, "frames": self.frames,
                "capture": self.capture}


@dataclass(slots=True)
class VerifyResult:
    tshark: str | None  # tshark's version line; None when not installed
    compared: int = 0  # connections both saw
    not_checked: int = 0  # tlssniff connections tshark did not dissect as TLS
    contradictions: list[Contradiction] = field(default_factory=list)
    error: str | None = None  # why the check could not run

    @property
    def agree(self) -> bool:
        return self.error is None and not self.contradictions

    def summary(self) -> str:
        if self.error:
            return f"not run: {self.error}"
        head = (f"{self.compared} connections compared with {self.tshark}"
                + (f", {self.not_checked} not dissected as TLS by tshark (not compared)"
                   if self.not_checked else ""))
        if not self.contradictions:
            return head + ": tshark agrees with every verdict."
        return head + f": {len(self.contradictions)} contradictions."

    def to_dict(self) -> dict:
        return {"tshark": self.tshark, "ran": self.error is None, "error": self.error,
                "compared": self.compared, "not_checked": self.not_checked,
                "agree": self.agree,
                "contradictions": [c.to_dict() for c in self.contradictions]}


@dataclass(slots=True)
class _Stream:
    """What tshark dissected on one TCP connection."""

    client: str | None = None
    server: str | None = None
    ts: float | None = None
    ch_frames: list = field(default_factory=list)
    sh_frames: list = field(default_factory=list)
    sni: str | None = None
    ch_psk: bool = False  # of the last ClientHello
    ch_ticket: bool = False
    ch_session_id: bool = False
    ch_offers_13: bool = False
    sh_version: int | None = None
    sh_psk: bool = False
    next_after_sh: str | None = None  # "full", "resumed"
    sh_seen: bool = False


def tshark_version() -> str | None:
    """tshark's version line, or None when tshark is not on PATH."""
    exe = shutil.which("tshark")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             **unprivileged())
    except (OSError, subprocess.TimeoutExpired, TsharkMissing):
        return None
    import re

    m = re.search(r"\d+\.\d+(\.\d+)?", out.stdout)
    return f"tshark {m.group(0)}" if m else "tshark"


def _endpoint(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# The tshark fields read, and the keys they have in tshark's ``-T ek`` output.
_FIELDS = (
    "frame.number", "frame.time_epoch", "tcp.stream", "tcp.srcport", "tcp.dstport",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tls.handshake.type", "tls.handshake.extension.type", "tls.handshake.extension.len",
    "tls.handshake.extensions_server_name", "tls.handshake.session_id_length",
    "tls.handshake.extensions.supported_version", "tls.handshake.random",
    "tls.handshake.version", "tls.record.content_type",
)
TSHARK_USER = "nobody"  # who runs tshark when tlssniff runs as root


def unprivileged() -> dict:
    """``subprocess`` arguments that run a child as :data:`TSHARK_USER` (no supplementary
    groups) when tlssniff runs as root; nothing otherwise. tshark's dissectors parse the
    untrusted capture: they get no privileges to abuse."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pw = pwd.getpwnam(TSHARK_USER)
    except KeyError:
        raise TsharkMissing(f"running as root and there is no user {TSHARK_USER!r} to run "
                            "tshark as (tlssniff does not run tshark as root)") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [],
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
                    "LC_ALL": "C.UTF-8"}, "cwd": "/"}


def _tshark(path: str) -> subprocess.Popen:
    """tshark reading ``path`` from its stdin (opened here, so tshark needs no permission on
    the file), writing the :data:`_FIELDS` of the hello packets as EK JSON lines."""
    exe = shutil.which("tshark")
    if exe is None:
        raise TsharkMissing("tshark is not installed (Debian/Ubuntu: apt-get install tshark)")
    cmd = [exe, "-n", "-r", "-", "-Y", _DISPLAY_FILTER, "-T", "ek"]
    for name in _FIELDS:
        cmd += ["-e", name]
    drop = unprivileged()
    with open(path, "rb") as f:
        return subprocess.Popen(cmd, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                **drop)


def dissect(path: str) -> list[_Stream]:
    """tshark's view of every TCP connection of ``path`` that carries a ClientHello."""
    streams: dict[str, _Stream] = {}
    proc = _tshark(str(path))
    assert proc.stdout is not None and proc.stderr is not None
    err = b""
    try:
        for line in proc.stdout:
            if not line.startswith(b'{"timestamp"'):
                continue  # the EK index lines
            pkt = json.loads(line)["layers"]
            if "tcp_stream" not in pkt:
                continue  # QUIC and DTLS are not compared
            # the outer IP header, as Wireshark's own columns show it
            src_ip = (pkt.get("ip_src") or pkt.get("ipv6_src") or [None])[0]
            dst_ip = (pkt.get("ip_dst") or pkt.get("ipv6_dst") or [None])[0]
            if src_ip is None or dst_ip is None:
                continue
            src = _endpoint(src_ip, pkt["tcp_srcport"][0])
            dst = _endpoint(dst_ip, pkt["tcp_dstport"][0])
            s = streams.setdefault(pkt["tcp_stream"][0], _Stream())
            _read_packet(s, pkt, src, dst, int(pkt["frame_number"][0]),
                         _epoch(pkt["frame_time_epoch"][0]))
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
        code = proc.wait()
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
    if code != 0 and "cut short in the middle of a packet" not in last[0]:
        # A capture cut mid-packet (tshark exits 2 after dissecting what came before, as
        # tlssniff reads it too) is compared up to the cut; any other failure is reported.
        raise TsharkFailed(f"{path}: tshark exited with status {code}: "
                           f"{last[0].replace('The standard input', 'the file')[:200]}")
    return [s for s in streams.values() if s.client is not None]


def _epoch(text: str) -> float:
    """frame.time_epoch: seconds ("1700000000.020050000"), or an ISO time in newer tsharks."""
    try:
        return float(text)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(text.replace("Z", "+00:00")[:26]).timestamp()


def _ints(pkt: dict, key: str, base: int = 10) -> list[int]:
    out = []
    for x in pkt.get(key, ()):
        try:
            out.append(int(x, base))
        except (TypeError, ValueError):
            pass
    return out


def _read_packet(s: _Stream, pkt: dict, src: str, dst: str, number: int, ts: float) -> None:
    """One packet's TLS fields (every record and message of the packet, in order)."""
    types = _ints(pkt, "tls_handshake_type")
    exts = list(zip(_ints(pkt, "tls_handshake_extension_type"),
                    _ints(pkt, "tls_handshake_extension_len")))
    from_client = s.client is None or src == s.client
    if 1 in types and (s.client is None or from_client):
        if s.client is None:
            s.client, s.server, s.ts = src, dst, ts
        s.ch_frames.append(number)
        names = pkt.get("tls_handshake_extensions_server_name") or []
        if names and s.sni is None:
            s.sni = names[0]
        s.ch_psk = any(t == 41 for t, _ in exts)
        s.ch_ticket = any(t == 35 and n > 0 for t, n in exts)
        sid_len = _ints(pkt, "tls_handshake_session_id_length")
        s.ch_session_id = bool(sid_len) and sid_len[0] > 0
        sv = _ints(pkt, "tls_handshake_extensions_supported_version", 16)
        s.ch_offers_13 = any(v == 0x0304 or v >> 8 == 0x7F for v in sv)
        return
    if s.client is None or from_client:
        return
    records = _ints(pkt, "tls_record_content_type")
    if 2 in types:
        randoms = pkt.get("tls_handshake_random") or []
        hrr = bool(randoms) and randoms[0].replace(":", "").lower() == _HRR_RANDOM
        s.sh_frames.append(number)
        if not hrr:
            s.sh_seen = True
            sv = _ints(pkt, "tls_handshake_extensions_supported_version", 16)
            legacy = _ints(pkt, "tls_handshake_version", 16)
            s.sh_version = sv[0] if sv else (legacy[0] if legacy else None)
            s.sh_psk = any(t == 41 for t, _ in exts)
            after = types[types.index(2) + 1:]
            s.next_after_sh = _next_kind(after, records)
        return
    if s.sh_seen and s.next_after_sh is None:
        s.next_after_sh = _next_kind(types, records)


def _next_kind(types: list[int], records: list[int]) -> str | None:
    for t in types:
        if t in _FULL_NEXT:
            return "full"
        if t in _RESUMED_NEXT:
            return "resumed"
    if 20 in records:
        return "resumed"  # the server's ChangeCipherSpec before any other handshake message
    return None


def _version_code(name: str | None) -> int | None:
    if not name:
        return None
    if name in _VERSIONS:
        return _VERSIONS[name]
    for prefix, base in (("TLSv1.3-draft", 0x7F00), ("TLSv1.3-experiment", 0x7E00)):
        if name.startswith(prefix):
            try:
                return base | int(name.removeprefix(prefix))
            except ValueError:
                return None
    return None


def _name(code: int | None) -> str | None:
    if code is None:
        return None
    for k, v in _VERSIONS.items():
        if v == code:
            return k
    return f"0x{code:04x}"


def _comparable_name(name: str | None) -> str | None:
    """A server name in the form both sides can produce: tshark cuts a name at its first NUL
    and decodes it as UTF-8 (U+FFFD for bad bytes), tlssniff keeps every byte (one U+FFFD per
    byte above 0x7f). Cut at the NUL and each run of non-ASCII characters folded to one
    U+FFFD, the two agree exactly when the bytes they read do, up to those two differences."""
    if not name:
        return None
    name = name.split("\x00", 1)[0]
    out: list[str] = []
    for ch in name:
        if ord(ch) < 0x80:
            out.append(ch)
        elif not out or out[-1] != "\ufffd":
            out.append("\ufffd")
    return "".join(out) or None


def compare(streams: list[_Stream], verdicts: list[dict], capture: str | None = None
            ) -> tuple[int, int, list[Contradiction]]:
    """(compared, not_checked, contradictions) of tshark's streams against JSONL verdicts."""
    by_ends: dict[tuple[str, str], list[dict]] = {}
    for v in verdicts:
        if v.get("transport", "tcp") == "tcp":
            by_ends.setdefault((v["client"], v["server"]), []).append(v)
    used: set[int] = set()
    compared = 0
    out: list[Contradiction] = []
    for s in streams:
        cands = [v for v in by_ends.get((s.client, s.server), []) if id(v) not in used]
        frames = s.ch_frames[:1] + s.sh_frames[-1:]

        def bad(fld: str, ours, theirs, s=s, frames=frames) -> None:
            out.append(Contradiction(s.client, s.server, fld, ours, theirs, frames, capture))

        if not cands:
            bad("connection", None, "ClientHello" + (f" (sni {s.sni})" if s.sni else ""))
            continue
        v = min(cands, key=lambda v: abs(v["ts"] - (s.ts or v["ts"])))
        used.add(id(v))
        compared += 1
        if v.get("note") == "missing_start":
            bad("connection", "missing_start", "ClientHello")
            continue
        if _comparable_name(v.get("sni")) != _comparable_name(s.sni):
            bad("sni", v.get("sni"), s.sni)
        if s.sh_seen and s.sh_version is not None and v.get("version"):
            ours = _version_code(v["version"])
            if ours is not None and ours != s.sh_version:
                bad("version", v["version"], _name(s.sh_version))
        # offered
        if s.ch_psk:
            want = "psk"
        elif s.ch_ticket:
            want = "ticket"
        elif (s.ch_session_id and not s.ch_offers_13 and s.sh_version is not None
              and s.sh_version <= 0x0303):
            want = "session_id"
        else:
            want = None
        got = v.get("offered")
        if want is not None and got != want:
            bad("offered", got, want)
        elif want is None and got in ("psk", "ticket"):
            bad("offered", got, "none")
        elif want is None and got == "session_id" and not s.ch_session_id:
            bad("offered", got, "none (empty session id)")
        # handshake
        hs = v.get("handshake")
        if s.sh_seen and s.sh_version is not None:
            if not 0x0300 <= s.sh_version <= 0x0303:  # TLS 1.3, its drafts and experiments
                if s.sh_psk and hs != "psk":
                    bad("handshake", hs, "psk (pre_shared_key in ServerHello)")
                elif not s.sh_psk and hs == "psk":
                    bad("handshake", hs, "full (no pre_shared_key in ServerHello)")
            elif s.next_after_sh == "full" and hs != "full":
                bad("handshake", hs, "full (Certificate/key exchange after ServerHello)")
            elif s.next_after_sh == "resumed" and hs not in ("session_id", "ticket"):
                bad("handshake", hs, "resumed (ChangeCipherSpec/NewSessionTicket after "
                    "ServerHello)")
    not_checked = sum(1 for group in by_ends.values() for v in group if id(v) not in used
                      and v.get("note") != "missing_start")
    return compared, not_checked, out


def verify_captures(paths: list[str], verdicts: list[dict] | None = None) -> VerifyResult:
    """Cross-check ``paths``; ``verdicts`` (JSONL dicts) default to tlssniff's own analysis,
    one file at a time (so each verdict is compared with the file it came from)."""
    result = VerifyResult(tshark=tshark_version())
    for path in paths:
        if verdicts is None:
            from tlssniff.engine.parallel import analyze_captures

            mine: list[dict] = []
            analyze_captures([str(path)], lambda v, mine=mine: mine.append(v.to_dict()))
        else:
            mine = [v for v in verdicts if v.get("capture") in (None, str(path))] \
                if len(paths) > 1 else verdicts
        compared, not_checked, bad = compare(dissect(str(path)), mine, str(path))
        result.compared += compared
        result.not_checked += not_checked
        result.contradictions += bad
    return result


def verify_verdicts(paths: list[str], verdicts: list[ConnectionVerdict]) -> VerifyResult:
    """The report's cross-check: never raises; says why when it cannot run."""
    if shutil.which("tshark") is None:
        return VerifyResult(tshark=None, error="tshark is not installed")
    try:
        return verify_captures(paths, [v.to_dict() for v in verdicts])
    except (TsharkMissing, TsharkFailed) as err:
        return VerifyResult(tshark=tshark_version(), error=str(err))
    except Exception as err:  # tshark crashed or choked on the file: say so, keep the bundle
        return VerifyResult(tshark=tshark_version(), error=f"{type(err).__name__}: {err}")
