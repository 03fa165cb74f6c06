#!/usr/bin/env python3
"""Derive the expected verdicts for the public captures (tests/data/public_truth.json).

This is an independent oracle, not a copy of tlssniff: tshark decodes the link layers, tunnels
and TCP segments (`tcp.payload` of every segment, per `tcp.stream`); this script reassembles
each direction by sequence number itself, finds TLS by content (any port), parses the clear-text
hello messages and applies docs/verdicts.md.  Hand-checked special cases are documented in
tests/data/PUBLIC_TRUTH.md.  Must not be imported by tests.

    python scripts/derive_public_truth.py > tests/data/public_truth.json
    python scripts/derive_public_truth.py --zeek      # comparison with Zeek's ssl.log baselines
    python scripts/derive_public_truth.py --facts F   # raw hello facts of one capture
"""
from __future__ import annotations

import bisect
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from dataclasses import dataclass, field

ROOT = os.environ.get("PUBLIC_CAPTURES", str(Path(__file__).resolve().parent.parent / "captures" / "public"))
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# Handshake message type names (for `why`)
HS_NAMES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
            5: "EndOfEarlyData", 6: "HelloRetryRequest(draft)", 8: "EncryptedExtensions",
            11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
            14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange",
            20: "Finished", 22: "CertificateStatus"}
FULL_NEXT = {11, 12, 13, 14, 22}   # CertificateStatus only follows a Certificate, but be lenient


# ---------------------------------------------------------------------------------------------
# TCP extraction and reassembly (tshark decodes; we reassemble)

FIELDS = ["frame.number", "frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
          "tcp.srcport", "tcp.dstport", "tcp.stream", "tcp.seq_raw", "tcp.len",
          "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset", "tcp.payload"]


@dataclass
class Direction:
    segs: list = field(default_factory=list)       # (seq, frame, bytes, tcp_len)
    syn_seq: int | None = None
    data: bytes = b""
    offsets: list = field(default_factory=list)    # sorted (start_offset, frame)
    gap_at: int | None = None                      # first missing byte offset (None: no gap)
    start_missing: bool = False                    # no SYN: the stream start is not known
    first_frame: int | None = None


@dataclass
class Conn:
    stream: int
    a: tuple      # (ip, port) of first packet's source
    b: tuple
    dirs: dict = field(default_factory=dict)      # (ip,port) src -> Direction
    syn_from: tuple | None = None
    first_frame: int = 0


def fmt_ep(ip: str, port: int) -> str:
    addr = ipaddress.ip_address(ip)
    if addr.version == 6:
        return f"[{addr.compressed}]:{port}"
    return f"{addr}:{port}"


def tshark_tcp(path: str) -> dict[int, Conn]:
    cmd = ["tshark", "-n", "-r", path, "-Y", "tcp", "-T", "fields", "-E", "separator=/t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    conns: dict[int, Conn] = {}
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("\t")))
        protos = v["frame.protocols"].split(":")
        if "icmp" in protos or "icmpv6" in protos:
            continue                       # TCP header quoted inside an ICMP error
        # innermost IP header = last ip/ipv6 layer before tcp
        tcp_i = len(protos) - 1 - protos[::-1].index("tcp")
        ip_layers = [p for p in protos[:tcp_i] if p in ("ip", "ipv6")]
        if not ip_layers:
            continue
        kind = ip_layers[-1]
        src = v[f"{kind}.src"].split(",")[-1]
        dst = v[f"{kind}.dst"].split(",")[-1]
        # only the innermost TCP header counts (tcp fields may repeat for tunnels in tunnels)
        def last(k, v=v):
            return v[k].split(",")[-1]

        sport, dport = int(last("tcp.srcport")), int(last("tcp.dstport"))
        stream = int(last("tcp.stream"))
        seq = int(last("tcp.seq_raw"))
        tlen = int(last("tcp.len") or 0)
        syn, ack = last("tcp.flags.syn") in ("1", "True"), last("tcp.flags.ack") in ("1", "True")
        payload = bytes.fromhex(v["tcp.payload"].split(",")[-1].replace(":", "")) if v["tcp.payload"] else b""
        frame = int(v["frame.number"])
        s, d = (src, sport), (dst, dport)
        c = conns.get(stream)
        if c is None:
            c = conns[stream] = Conn(stream, s, d, first_frame=frame)
        dr = c.dirs.setdefault(s, Direction())
        c.dirs.setdefault(d, Direction())
        if dr.first_frame is None:
            dr.first_frame = frame
        if syn:
            dr.syn_seq = seq
            if not ack and c.syn_from is None:
                c.syn_from = s
        if tlen or payload:
            dr.segs.append((seq, frame, payload, tlen))
    for c in conns.values():
        for dr in c.dirs.values():
            reassemble(dr)
    return conns


def reassemble(dr: Direction) -> None:
    if not dr.segs and dr.syn_seq is None:
        return
    if dr.syn_seq is not None:
        base = (dr.syn_seq + 1) & 0xFFFFFFFF
    else:
        dr.start_missing = True
        ref = dr.segs[0][0]
        rel = [((s - ref + 2**31) % 2**32) - 2**31 for s, *_ in dr.segs]
        base = (ref + min(rel)) & 0xFFFFFFFF
    buf: dict[int, int] = {}
    owner: dict[int, int] = {}
    maxend = 0
    for seq, frame, payload, tlen in dr.segs:
        off = (seq - base) & 0xFFFFFFFF
        if off > 2**31:
            continue  # before the stream start (e.g. a keep-alive)
        for i, byte in enumerate(payload):
            if off + i not in buf:           # first copy wins
                buf[off + i] = byte
                owner[off + i] = frame
        maxend = max(maxend, off + tlen)
    n = 0
    while n in buf:
        n += 1
    dr.data = bytes(buf[i] for i in range(n))
    if n < maxend:
        dr.gap_at = n
    prev = None
    for i in range(n):
        if owner[i] != prev:
            dr.offsets.append((i, owner[i]))
            prev = owner[i]


def frame_at(dr: Direction, off: int) -> int | None:
    if not dr.offsets:
        return None
    i = bisect.bisect_right([o for o, _ in dr.offsets], off) - 1
    return dr.offsets[max(i, 0)][1]


# ---------------------------------------------------------------------------------------------
# TLS parsing

def version_name(v: int | None) -> str | None:
    if v is None:
        return None
    names = {0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1",
             0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
    if v in names:
        return names[v]
    if v >> 8 == 0x7F:
        return f"TLSv1.3-draft{v & 0xFF}"
    if v >> 8 == 0x7E:
        return f"TLSv1.3-experiment{v & 0xFF}"
    if v >> 8 == 0xFB:
        return f"TLSv1.3-fb{v & 0xFF}"
    return f"0x{v:04x}"


def is_tls13_name(name: str | None) -> bool:
    return bool(name) and name.startswith("TLSv1.3")


def is_tls13(v: int | None) -> bool:
    return v is not None and (v == 0x0304 or v >> 8 in (0x7F, 0x7E, 0xFB))


@dataclass
class Record:
    off: int
    ctype: int
    version: int
    body: bytes
    complete: bool


def parse_records(data: bytes, start: int = 0) -> tuple[list[Record], str | None]:
    """Split a byte stream into TLS records.  Returns (records, problem)."""
    recs = []
    i = start
    while i < len(data):
        if data[i] not in (20, 21, 22, 23, 24) or (len(data) - i >= 2 and data[i + 1] != 3):
            return recs, "malformed"
        if len(data) - i < 5:
            return recs, "truncated"
        ct, ver, ln = data[i], int.from_bytes(data[i + 1:i + 3], "big"), int.from_bytes(data[i + 3:i + 5], "big")
        if ct not in (20, 21, 22, 23, 24) or ver >> 8 != 3:
            return recs, "malformed"
        if ln == 0 and ct in (20, 21, 22):
            return recs, "malformed"      # RFC 5246 6.2.1: no zero-length handshake/alert/CCS fragments
        body = data[i + 5:i + 5 + ln]
        recs.append(Record(i, ct, ver, body, len(body) == ln))
        if len(body) < ln:
            return recs, "truncated"
        i += 5 + ln
    return recs, None


def looks_like_ch_record(data: bytes, i: int) -> bool:
    return (len(data) >= i + 6 and data[i] == 22 and data[i + 1] == 3 and data[i + 2] <= 4
            and data[i + 5] == 1 and 4 <= int.from_bytes(data[i + 3:i + 5], "big") <= 18432)


def is_sslv2_client_hello(data: bytes) -> bool:
    return len(data) >= 3 and data[0] & 0x80 and data[2] == 1


@dataclass
class Hello:
    kind: str              # "CH" / "SH" / "HRR6"
    off: int
    frame: int | None
    legacy_version: int = 0
    random: bytes = b""
    session_id: bytes = b""
    exts: dict = field(default_factory=dict)       # type -> bytes (first occurrence)
    ext_order: list = field(default_factory=list)


def parse_exts(b: bytes, i: int) -> tuple[dict, list]:
    exts, order = {}, []
    if i + 2 > len(b):
        return exts, order
    end = i + 2 + int.from_bytes(b[i:i + 2], "big")
    i += 2
    while i + 4 <= min(end, len(b)):
        t, ln = int.from_bytes(b[i:i + 2], "big"), int.from_bytes(b[i + 2:i + 4], "big")
        exts.setdefault(t, b[i + 4:i + 4 + ln])
        order.append(t)
        i += 4 + ln
    return exts, order


def parse_client_hello(body: bytes, off: int, frame) -> Hello:
    h = Hello("CH", off, frame)
    h.legacy_version = int.from_bytes(body[0:2], "big")
    h.random = body[2:34]
    sl = body[34]
    h.session_id = body[35:35 + sl]
    i = 35 + sl
    i += 2 + int.from_bytes(body[i:i + 2], "big")
    i += 1 + body[i]
    h.exts, h.ext_order = parse_exts(body, i)
    return h


def parse_server_hello(body: bytes, off: int, frame) -> Hello:
    h = Hello("SH", off, frame)
    h.legacy_version = int.from_bytes(body[0:2], "big")
    h.random = body[2:34]
    v = h.legacy_version
    if v >> 8 == 0x7F and (v & 0xFF) < 22:
        # draft-ietf-tls-tls13 <= 21: version, random, cipher_suite, extensions (no session id,
        # no compression method)
        h.exts, h.ext_order = parse_exts(body, 36)
        return h
    sl = body[34]
    h.session_id = body[35:35 + sl]
    i = 35 + sl + 2 + 1
    h.exts, h.ext_order = parse_exts(body, i)
    return h


def ch_versions(h: Hello) -> list[int]:
    sv = h.exts.get(43)
    if not sv:
        return []
    n = sv[0]
    return [int.from_bytes(sv[1 + k:3 + k], "big") for k in range(0, n, 2)]


def sh_version(h: Hello) -> int:
    sv = h.exts.get(43)
    if sv is not None and len(sv) == 2:
        return int.from_bytes(sv, "big")
    return h.legacy_version


def sni_of(h: Hello) -> str | None:
    e = h.exts.get(0)
    if not e or len(e) < 5:
        return None
    ln = int.from_bytes(e[3:5], "big")
    return e[5:5 + ln].decode("ascii", "replace")


@dataclass
class Side:
    """What one direction's TLS bytes show."""
    records: list = field(default_factory=list)
    problem: str | None = None
    msgs: list = field(default_factory=list)       # (record_index, off, type, body) plaintext hs msgs
    events: list = field(default_factory=list)     # ordered ("hs", type, off, body) / ("ccs", off) / ("alert", off, level, desc) / ("app", off) / ("enc_hs", off)


def analyze_side(data: bytes, start: int, tls13_hint) -> Side:
    s = Side()
    s.records, s.problem = parse_records(data, start)
    hsbuf = b""
    hsbuf_off = None
    encrypted = False
    for rec in s.records:
        if rec.ctype == 20:
            s.events.append(("ccs", rec.off))
            if not tls13_hint():
                encrypted = True       # TLS <= 1.2: what follows the CCS is encrypted
            continue
        if rec.ctype == 21:
            if encrypted or len(rec.body) != 2:
                s.events.append(("alert", rec.off, None, None))
            else:
                s.events.append(("alert", rec.off, rec.body[0], rec.body[1]))
            continue
        if rec.ctype == 23:
            s.events.append(("app", rec.off))
            continue
        if rec.ctype == 24:
            s.events.append(("heartbeat", rec.off))
            continue
        if rec.ctype == 22:
            if encrypted:
                s.events.append(("enc_hs", rec.off))
                continue
            if hsbuf_off is None:
                hsbuf_off = rec.off
            hsbuf += rec.body
            while len(hsbuf) >= 4:
                t, ln = hsbuf[0], int.from_bytes(hsbuf[1:4], "big")
                if len(hsbuf) < 4 + ln:
                    break
                s.events.append(("hs", t, hsbuf_off, hsbuf[4:4 + ln]))
                hsbuf = hsbuf[4 + ln:]
                hsbuf_off = rec.off if hsbuf else None
            if hsbuf_off is not None and not hsbuf:
                hsbuf_off = None
    if hsbuf:
        s.events.append(("partial_hs", hsbuf[0], hsbuf_off, None))
    return s


# ---------------------------------------------------------------------------------------------
# Verdicts

def verdict(c_data: bytes, c_dir: Direction, c_start: int,
            s_data: bytes, s_dir: Direction, s_start: int | None,
            issued_ids: set, missing_start: bool) -> dict:
    v: dict = {"sni": None, "version": None, "offered": "none", "handshake": "unknown",
               "hrr": False, "early_data": "none"}
    why: list[str] = []
    fr = lambda d, o: frame_at(d, o)

    if missing_start:
        v["note"] = "missing_start"
        # the server may still show its version in a clear record header; no hello seen
        v["why"] = "capture starts mid-stream: first client bytes are TLS records, no ClientHello"
        return v

    # --- SSLv2-compatible ClientHello
    if is_sslv2_client_hello(c_data[c_start:]):
        ln = ((c_data[c_start] & 0x7F) << 8) | c_data[c_start + 1]
        body = c_data[c_start + 2:c_start + 2 + ln]
        cver = int.from_bytes(body[1:3], "big")
        sid_len = int.from_bytes(body[5:7], "big")
        why.append(f"SSLv2-format ClientHello (frame {fr(c_dir, c_start)}, client max 0x{cver:04x}, session id len {sid_len})")
        if s_data[s_start or 0:][:1] and s_data[s_start or 0] & 0x80:
            v["note"] = "sslv2"
            v["version"] = "SSLv2"
            why.append(f"server answers with an SSLv2 SERVER-HELLO (frame {fr(s_dir, s_start or 0)})")
            v["why"] = "; ".join(why)
            v["_ch_frames"] = [fr(c_dir, c_start)]
            return v
        # server answers with SSLv3/TLS records: continue as TLS with no CH extensions
        v["_sslv2_ch"] = True
        chs = [Hello("CH", c_start, fr(c_dir, c_start), cver, b"", b"")]
        if sid_len:
            chs[0].session_id = b"?" * sid_len
        client = analyze_side(c_data, c_start + 2 + ln, lambda: False)
    else:
        chs = []
        client = None

    server_tls13 = {"v": False}
    server = analyze_side(s_data, s_start, lambda: server_tls13["v"]) if s_start is not None else Side()

    # find server hellos first, to know the version for the client side's CCS rule
    def collect(events):
        shs, hrr, hrr_frame, tls13 = [], False, None, False
        for ev in events:
            if ev[0] == "hs" and ev[1] == 2:
                h = parse_server_hello(ev[3], ev[2], fr(s_dir, ev[2]))
                shs.append(h)
                if h.random == HRR_RANDOM:
                    hrr, hrr_frame = True, h.frame
                elif is_tls13(sh_version(h)):
                    tls13 = True
            elif ev[0] == "hs" and ev[1] == 6:
                hrr, hrr_frame = True, fr(s_dir, ev[2])
                shs.append(Hello("HRR6", ev[2], hrr_frame))
        return shs, hrr, hrr_frame, tls13

    s_events = server.events
    shs, hrr, hrr_frame, tls13 = collect(s_events)
    if tls13 or hrr:
        # TLS 1.3 (or HRR): a CCS does not end the clear-text handshake (RFC 8446 D.4)
        server_tls13["v"] = True
        server = analyze_side(s_data, s_start, lambda: True)
        s_events = server.events
        shs, hrr, hrr_frame, tls13 = collect(s_events)
    v["_s_events"] = [e[:2] if e[0] != "hs" else ("hs", HS_NAMES.get(e[1], e[1]), fr(s_dir, e[2])) for e in s_events][:12]

    if client is None:
        client = analyze_side(c_data, c_start, lambda: server_tls13["v"] or hrr)
    v["_c_events"] = [e[:2] if e[0] != "hs" else ("hs", HS_NAMES.get(e[1], e[1]), fr(c_dir, e[2])) for e in client.events][:12]
    for ev in client.events:
        if ev[0] == "hs" and ev[1] == 1:
            chs.append(parse_client_hello(ev[3], ev[2], fr(c_dir, ev[2])))
    if not chs:
        v["note"] = "malformed"
        v["why"] = "client's first record is a handshake record but no complete ClientHello parsed"
        return v

    ch = chs[0]
    v["sni"] = sni_of(ch)
    v["_chs"] = [dict(frame=h.frame, ver=hex(h.legacy_version), sid=h.session_id.hex()[:16] + "/%d" % len(h.session_id),
                      exts=h.ext_order, tkt=len(h.exts.get(35, b"")), sv=[hex(x) for x in ch_versions(h)]) for h in chs]
    v["_ch_frames"] = [h.frame for h in chs]
    offers13 = any(is_tls13(x) for h in chs for x in ch_versions(h))
    has_psk = any(41 in h.exts for h in chs)
    ticket_lens = [len(h.exts[35]) for h in chs if 35 in h.exts]
    has_ticket = any(n > 0 for n in ticket_lens)
    early = 42 in ch.exts
    sid = next((h.session_id for h in chs if h.session_id), b"")

    v["_shs"] = [dict(kind=h.kind, frame=h.frame, ver=hex(h.legacy_version), sv=h.exts.get(43, b"").hex(), hrr=h.random == HRR_RANDOM,
                      sid=h.session_id.hex()[:16] + "/%d" % len(h.session_id), exts=h.ext_order) for h in shs]
    real_shs = [h for h in shs if h.kind == "SH" and h.random != HRR_RANDOM]
    final_sh = real_shs[-1] if real_shs else None
    nego = sh_version(final_sh) if final_sh else None
    v["version"] = version_name(nego)
    v["hrr"] = hrr

    # offered
    if has_psk:
        v["offered"] = "psk"
        why.append(f"CH pre_shared_key (frame {ch.frame if 41 in ch.exts else chs[-1].frame})")
    elif has_ticket:
        v["offered"] = "ticket"
        why.append(f"CH SessionTicket ext {max(ticket_lens)} bytes")
    elif sid:
        if nego is not None and is_tls13(nego):
            why.append(f"CH session id ({len(sid)} B) is a TLS 1.3 compat-mode id, not an offer (RFC 8446 4.1.2, D.4)")
        elif not offers13:
            v["offered"] = "session_id"
            why.append(f"CH session id {len(sid)} B, client offers no TLS 1.3"
                       + (" (id issued by an earlier SH of this capture)" if sid in issued_ids else ""))
            if final_sh is not None and not is_tls13(nego):
                why.append("SH echoes it" if final_sh.session_id == sid else
                           f"SH answers a different id ({len(final_sh.session_id)} B): offer refused")
        elif final_sh is not None and final_sh.session_id == sid:
            v["offered"] = "session_id"
            why.append(f"CH session id {len(sid)} B echoed by TLS<=1.2 SH")
        elif sid in issued_ids:
            v["offered"] = "session_id"
            why.append(f"CH session id {len(sid)} B was issued earlier in the capture")
        else:
            why.append(f"CH session id ({len(sid)} B) with TLS 1.3 in supported_versions, not echoed by a TLS<=1.2 SH nor issued earlier: compat-mode id, not an offer")
    else:
        if ticket_lens:
            why.append("CH SessionTicket ext empty")

    # early data
    if early:
        why.append("CH early_data")

    # handshake
    if final_sh is None:
        first = next((e for e in s_events if e[0] in ("hs", "alert", "ccs", "app")), None)
        if first is not None and first[0] == "alert":
            v["note"] = "server_alert"
            why.append(f"server answers with alert {first[3]} (frame {fr(s_dir, first[1])})")
        elif s_start is not None and server.problem == "malformed":
            v["note"] = "malformed"
            why.append(f"server's answer does not parse as TLS records (frame {fr(s_dir, s_start)}: {s_data[s_start:s_start + 8].hex()})")
        elif s_dir.gap_at is not None:
            v["note"] = "gap"
            why.append("server bytes missing before ServerHello")
        else:
            v["note"] = "no_server_hello"
            why.append("no ServerHello from the server" + (" after HRR" if hrr else "")
                       + ("" if s_data else ": the server sent no data"))
        if early:
            v["early_data"] = "rejected" if hrr else "offered"
        v["why"] = "; ".join(why)
        return v

    why.insert(0, f"SH {version_name(nego)} (frame {final_sh.frame})")
    pre = [e for e in s_events[:[i for i, e in enumerate(s_events) if e[0] == "hs" and e[2] == final_sh.off][0]] if e[0] == "alert"]
    for a in pre:
        why.append(f"server sent alert level {a[2]} desc {a[3]} before its SH (frame {fr(s_dir, a[1])}), not fatal")
    if hrr:
        why.append(f"HelloRetryRequest (frame {hrr_frame})")
    if nego >> 8 == 0x7E:
        why.append(f"0x{nego:04x} is Chrome/BoringSSL's pre-RFC 'TLS 1.3 experiment' wire version (not a draft number, not Facebook's 0xfbNN)")
    if nego >> 8 == 0x7E and final_sh.session_id and final_sh.session_id == sid and 41 not in final_sh.exts:
        why.append("Zeek marks this resumed because the session id is echoed; RFC 8446 4.1.3/4.2.11: only SH pre_shared_key proves resumption")
    if is_tls13(nego):
        if 41 in final_sh.exts:
            v["handshake"] = "psk"
            why.append("SH pre_shared_key")
        else:
            v["handshake"] = "full"
            why.append("SH without pre_shared_key")
            if final_sh.session_id and final_sh.session_id == sid:
                pass
        if early:
            if hrr:
                v["early_data"] = "rejected"
            elif v["handshake"] == "psk":
                v["early_data"] = "offered"
            else:
                v["early_data"] = "rejected"
    else:
        # next server message after the final SH
        idx = next(i for i, e in enumerate(s_events) if e[0] == "hs" and e[2] == final_sh.off and e[1] == 2)
        nxt = s_events[idx + 1] if idx + 1 < len(s_events) else None
        if nxt is None or nxt[0] == "partial_hs":
            v["note"] = "server_hello_only"
            if s_dir.gap_at is not None:
                v["note"] = "gap"
            why.append("nothing readable after SH")
        elif nxt[0] == "ccs" or (nxt[0] == "hs" and nxt[1] == 4):
            kind = "CCS" if nxt[0] == "ccs" else "NewSessionTicket"
            v["handshake"] = "ticket" if has_ticket else "session_id"
            why.append(f"{kind} right after SH (frame {fr(s_dir, nxt[1] if nxt[0] == 'ccs' else nxt[2])})")
        elif nxt[0] == "hs" and nxt[1] in FULL_NEXT:
            v["handshake"] = "full"
            why.append(f"{HS_NAMES.get(nxt[1])} after SH (frame {fr(s_dir, nxt[2])})")
        elif nxt[0] == "alert":
            v["note"] = "server_hello_only"
            why.append(f"alert after SH (frame {fr(s_dir, nxt[1])})")
        else:
            v["note"] = "malformed"
            why.append(f"unexpected {nxt[:2]} after SH")
        if early:
            v["early_data"] = "rejected"
            why.append("TLS<=1.2 negotiated: early data impossible")
    v["why"] = "; ".join(why)
    v["_sh_sid"] = final_sh.session_id
    return v


# ---------------------------------------------------------------------------------------------
# Connection classification

STARTTLS_PATTERNS = [
    (re.compile(rb"(?im)^STARTTLS\r?\n"), None),          # SMTP / IMAP (tag STARTTLS) / IRC / ...
    (re.compile(rb"(?im)^STLS\r?\n"), "starttls-pop3"),
    (re.compile(rb"(?im)^AUTH (TLS|SSL)\r?\n"), "starttls-ftp"),
    (re.compile(rb"<starttls"), "starttls-xmpp"),
    (re.compile(rb"1\.3\.6\.1\.4\.1\.1466\.20037"), "starttls-ldap"),
]


def starttls_reason(c_pre: bytes, s_pre: bytes, sport: int, cport: int) -> str:
    text = c_pre
    if b"\x00\x00\x00\x08\x04\xd2\x16\x2f" in c_pre[:16] or c_pre[4:8] == b"\x04\xd2\x16\x2f":
        return "starttls-postgresql"
    for pat, reason in STARTTLS_PATTERNS:
        if pat.search(text):
            if reason:
                return reason
            if re.search(rb"(?im)^(EHLO|HELO) ", text):
                return "starttls-smtp"
            if re.search(rb"(?im)^\S+ STARTTLS", text) or re.search(rb"(?im)^\S+ CAPABILITY", text):
                return "starttls-imap"
            if re.search(rb"(?im)^(NICK|USER|CAP) ", text) or re.search(rb"(?m)^:\S+ 670 ", s_pre):
                return "starttls-irc"
            return "starttls"
    if re.search(rb"(?m)^:\S+ 670 ", s_pre) or sport in (6667, 6697):
        return "starttls-irc"
    if re.search(rb"(?im)^\S+ STARTTLS\r?\n", text):
        return "starttls-imap"
    if b"mysql" in s_pre.lower() or sport == 3306:
        return "starttls-mysql"
    if c_pre[:1] in (b"\x04", b"\x05"):
        return "socks"
    if c_pre.startswith(b"CONNECT "):
        return "http-connect"
    if c_pre[:2] == b"\x03\x00":
        return "rdp"
    return "plaintext-then-tls"


def find_tls_start(data: bytes, want_ch: bool) -> int | None:
    for i in range(len(data)):
        if data[i] != 22 or i + 6 > len(data):
            continue
        if want_ch and not looks_like_ch_record(data, i):
            continue
        if not want_ch and not (data[i + 1] == 3 and data[i + 2] <= 4 and data[i + 5] in (2, 6)):
            continue
        recs, prob = parse_records(data, i)
        if recs and prob != "malformed":
            return i
    return None


def find_server_tls_start(data: bytes, after: int = 0) -> int | None:
    i = find_tls_start(data[after:], want_ch=False)
    if i is not None:
        return i + after
    # alert-only answer
    for j in range(after, len(data) - 6):
        if data[j] == 21 and data[j + 1] == 3 and data[j + 2] <= 4 and data[j + 3:j + 5] == b"\x00\x02":
            return j
    return None


def classify_file(rel: str, facts_out=None) -> dict:
    path = os.path.join(ROOT, rel)
    conns = tshark_tcp(path)
    tls, not_an = [], []
    issued_ids: set = set()
    for stream in sorted(conns, key=lambda s: conns[s].first_frame):
        c = conns[stream]
        # who is the client?
        if c.syn_from is not None:
            client = c.syn_from
        else:
            client = c.a
        server = c.b if client == c.a else c.a
        cd, sd = c.dirs[client], c.dirs[server]
        cdata, sdata = cd.data, sd.data
        if not cdata and not sdata:
            continue
        missing_start = c.syn_from is None
        entry_base = {"client": fmt_ep(*client), "server": fmt_ep(*server)}
        ctls = looks_like_ch_record(cdata, 0) or (is_sslv2_client_hello(cdata) and len(cdata) > 10 and cdata[3:5] in (b"\x03\x00", b"\x03\x01", b"\x03\x02", b"\x03\x03", b"\x00\x02"))
        if missing_start:
            # mid-stream: do both sides carry TLS records?  Decide client/server by who sends
            # a ClientHello, else by content of records.
            if looks_like_ch_record(cdata, 0) or looks_like_ch_record(sdata, 0):
                if looks_like_ch_record(sdata, 0) and not looks_like_ch_record(cdata, 0):
                    client, server = server, client
                    cd, sd = sd, cd
                    cdata, sdata = sdata, cdata
                    entry_base = {"client": fmt_ep(*client), "server": fmt_ep(*server)}
                missing_start = False   # the ClientHello is there although the SYN is not
                ctls = True
            else:
                rc, pc = parse_records(cdata) if cdata else ([], "empty")
                rs, ps = parse_records(sdata) if sdata else ([], "empty")
                if (rc and pc != "malformed") or (rs and ps != "malformed"):
                    # TLS records mid-stream; server = lower port
                    if client[1] < server[1]:
                        client, server = server, client
                    e = dict(entry_base, client=fmt_ep(*client), server=fmt_ep(*server))
                    e.update({"sni": None, "version": None, "offered": "none", "handshake": "unknown",
                              "hrr": False, "early_data": "none", "note": "missing_start",
                              "why": "no SYN and no ClientHello: capture starts mid-stream on TLS records"})
                    tls.append(e)
                continue
        if ctls:
            v = verdict(cdata, cd, 0, sdata, sd, 0 if sdata else None, issued_ids, False)
            if v.get("_sh_sid") and not is_tls13_name(v.get("version")):
                issued_ids.add(v["_sh_sid"])
            tls.append(finish(entry_base, v, facts_out))
            continue
        # plaintext first: STARTTLS-like?
        cs = find_tls_start(cdata, want_ch=True)
        if cs is None:
            continue
        ss = find_server_tls_start(sdata)
        reason = starttls_reason(cdata[:cs], sdata[:ss] if ss is not None else sdata, server[1], client[1])
        v = verdict(cdata, cd, cs, sdata, sd, ss, issued_ids, False)
        e = dict(entry_base)
        e["reason"] = reason
        e["inner"] = clean(v)
        if facts_out is not None:
            facts_out.append((e, v))
        not_an.append(e)
    return {"tls": tls, "not_analyzed": not_an}


def clean(v: dict) -> dict:
    return {k: v[k] for k in ("sni", "version", "offered", "handshake", "hrr", "early_data", "note", "why") if k in v}


def finish(base: dict, v: dict, facts_out) -> dict:
    e = dict(base)
    e.update(clean(v))
    if facts_out is not None:
        facts_out.append((e, v))
    return e


# ---------------------------------------------------------------------------------------------
# Hand-verified overrides (see tests/data/PUBLIC_TRUTH.md).  Keyed by (file, client endpoint).
OVERRIDES: dict = {}


def all_files() -> list[str]:
    out = []
    for dp, dn, fn in os.walk(os.path.join(ROOT, "zeek")):
        dn[:] = sorted(d for d in dn if d != "_baseline")
        for f in sorted(fn):
            if f.endswith((".pcap", ".pcapng")):
                out.append(os.path.relpath(os.path.join(dp, f), ROOT))
    return sorted(out)


def main() -> None:
    args = sys.argv[1:]
    files = all_files()
    if args and args[0] == "--facts":
        facts = []
        classify_file(args[1], facts)
        for e, v in facts:
            print(json.dumps({k: v for k, v in e.items() if k not in ("why",)}, default=str))
            for k in ("_chs", "_shs", "_c_events", "_s_events"):
                print("   ", k, json.dumps(v.get(k), default=str))
        return
    result = {}
    for rel in files:
        r = classify_file(rel)
        if not r["tls"] and not r["not_analyzed"]:
            has_tcp = bool(subprocess.run(["tshark", "-n", "-r", os.path.join(ROOT, rel), "-Y", "tcp", "-c", "1"],
                                          capture_output=True, text=True).stdout.strip())
            r["tcp"] = has_tcp
        for e in r["tls"]:
            ov = OVERRIDES.get((rel, e["client"]))
            if ov:
                e.update(ov)
        for e in r["not_analyzed"]:
            ov = OVERRIDES.get((rel, e["client"]))
            if ov:
                e["inner"].update(ov)
        result[rel] = r
    if args and args[0] == "--zeek":
        compare_zeek(result)
        return
    if args and args[0] == "--tshark-check":
        tshark_check(result)
        return
    json.dump(result, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def zeek_rows() -> dict:
    rows: dict = {}
    base = os.path.join(ROOT, "zeek", "_baseline")
    for test in sorted(os.listdir(base)):
        traces = open(os.path.join(base, test, "TRACES.txt")).read().split()
        for fn in sorted(os.listdir(os.path.join(base, test))):
            if not fn.startswith("ssl") or not fn.endswith(".log"):
                continue
            fields = None
            for line in open(os.path.join(base, test, fn), errors="replace"):
                line = line.rstrip("\n")
                if line.startswith("#fields"):
                    fields = line.split("\t")[1:]
                elif line and not line.startswith("#") and fields:
                    r = dict(zip(fields, line.split("\t")))
                    key = (fmt_ep(r["id.orig_h"], int(r["id.orig_p"])), fmt_ep(r["id.resp_h"], int(r["id.resp_p"])))
                    rows.setdefault(key, []).append((test, fn, traces, r))
    return rows


def compare_zeek(result: dict) -> None:
    rows = zeek_rows()
    for rel, r in result.items():
        for kind in ("tls", "not_analyzed"):
            for e in r[kind]:
                v = e if kind == "tls" else e["inner"]
                key = (e["client"], e["server"])
                zs = [z for z in rows.get(key, []) if rel[len("zeek/"):] in z[2]]
                if not zs:
                    zs = rows.get(key, [])
                if not zs:
                    print(f"{rel}\t{e['client']}\t-> {e['server']}\tours={v['version']}/{v['offered']}/{v['handshake']}\tZEEK: no row")
                    continue
                seen = set()
                for _test, _fn, _traces, z in zs:
                    sig = (z.get("version"), z.get("resumed"), z.get("server_name"), z.get("established"), z.get("ssl_history"))
                    if sig in seen:
                        continue
                    seen.add(sig)
                    resumed = v["handshake"] in ("session_id", "ticket", "psk")
                    zres = z.get("resumed") == "T"
                    flags = []
                    if resumed != zres:
                        flags.append("RESUMED")
                    zv = z.get("version", "-").replace("TLSv13", "TLSv1.3").replace("TLSv12", "TLSv1.2").replace("TLSv11", "TLSv1.1").replace("TLSv10", "TLSv1.0")
                    if (v["version"] or "-") != zv:
                        flags.append("VERSION")
                    if (v["sni"] or "-") != z.get("server_name"):
                        flags.append("SNI")
                    print(f"{rel}\t{e['client']}\t{kind}\tours={v['version']}/{v['offered']}/{v['handshake']}/{v.get('note','')}/hrr={v['hrr']}/ed={v['early_data']}/sni={v['sni']}"
                          f"\tzeek={z.get('version')}/res={z.get('resumed')}/est={z.get('established')}/{z.get('ssl_history')}/sni={z.get('server_name')}\t{' '.join(flags)}")



# ---------------------------------------------------------------------------------------------
# Cross-check against tshark's own TLS dissection (--tshark-check)

def _as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _walk_hs(hs):
    """Yield (type, dict) for every handshake message dict in a tshark JSON record."""
    for h in _as_list(hs):
        if isinstance(h, dict) and "tls.handshake.type" in h:
            yield int(h["tls.handshake.type"]), h


def _exts(h):
    out = {}
    for k, val in h.items():
        if k.startswith("Extension: ") and isinstance(val, dict):
            t = int(val.get("tls.handshake.extension.type", -1))
            out.setdefault(t, (int(val.get("tls.handshake.extension.len", 0)), val))
    return out


def tshark_facts(rel: str, ports: set) -> dict:
    cmd = ["tshark", "-n", "-r", os.path.join(ROOT, rel), "-Y", "tls", "-T", "json", "--no-duplicate-keys"]
    for p in sorted(ports):
        cmd += ["-d", f"tcp.port=={p},tls"]
    js = json.loads(subprocess.run(cmd, capture_output=True, text=True).stdout or "[]")
    facts: dict = {}
    for pkt in js:
        L = pkt["_source"]["layers"]
        tcp = L.get("tcp")
        if isinstance(tcp, list):
            tcp = tcp[-1]
        ipl = L.get("ipv6") or L.get("ip")
        if isinstance(ipl, list):
            ipl = ipl[-1]
        src = ipl.get("ip.src") or ipl.get("ipv6.src")
        dst = ipl.get("ip.dst") or ipl.get("ipv6.dst")
        key = (fmt_ep(src, int(tcp["tcp.srcport"])), fmt_ep(dst, int(tcp["tcp.dstport"])))
        frame = int(L["frame"]["frame.number"])
        seq = facts.setdefault(key, [])
        for tl in _as_list(L.get("tls")):
            if not isinstance(tl, dict):
                continue
            for rec in _as_list(tl.get("tls.record")):
                if not isinstance(rec, dict):
                    continue
                ct = int(rec.get("tls.record.content_type", 0))
                if ct == 22:
                    msgs = list(_walk_hs(rec.get("tls.handshake")))
                    if not msgs:
                        seq.append(("enc", frame))
                    for t, h in msgs:
                        seq.append((t, frame, h))
                else:
                    seq.append((f"ct{ct}", frame))
    return facts


def tshark_check(result: dict) -> None:
    for rel, r in result.items():
        entries = [(e, e) for e in r["tls"]] + [(e, e["inner"]) for e in r["not_analyzed"]]
        if not entries:
            continue
        ports = {int(e["server"].rsplit(":", 1)[1]) for e, _ in entries} - {443}
        facts = tshark_facts(rel, ports)
        for e, v in entries:
            cseq = facts.get((e["client"], e["server"]), [])
            sseq = facts.get((e["server"], e["client"]), [])
            chs = [x for x in cseq if x[0] == 1]
            shs = [x for x in sseq if x[0] in (2, 6)]
            t = {}
            if chs:
                ex = _exts(chs[0][2])
                t["sid"] = int(chs[0][2].get("tls.handshake.session_id_length", 0))
                t["tkt"] = ex.get(35, (None,))[0]
                t["psk"] = any(41 in _exts(c[2]) for c in chs)
                t["ed"] = 42 in ex
            t["nch"] = len(chs)
            if shs:
                last = shs[-1][2]
                ex = _exts(last)
                sv = ex.get(43, (None, {}))[1].get("tls.handshake.extensions.supported_version")
                t["ver"] = sv or last.get("tls.handshake.version")
                t["sh_psk"] = 41 in ex
                t["hrr"] = any(x[0] == 6 or x[2].get("tls.handshake.random", "").replace(":", "") == HRR_RANDOM.hex() for x in shs)
                i = max(k for k, x in enumerate(sseq) if x[0] in (2, 6))
                t["next"] = sseq[i + 1][0] if i + 1 < len(sseq) else None
            t["s_first"] = sseq[0][0] if sseq else None
            print(f"{rel}\t{e['client']}\tours={v['version']}/{v['offered']}/{v['handshake']}/{v.get('note', '')}/hrr={v['hrr']}/ed={v['early_data']}\ttshark={t}")


if __name__ == "__main__":
    main()
