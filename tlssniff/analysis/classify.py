"""Handshake facts to verdict: the rules of docs/verdicts.md, in one place.

This is the thin layer over the tracker's facts (as Zeek's ``resumed``/``established`` logic is
over its parser's events). Every rule cites the RFC that makes it right.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Final

from tlssniff.analysis.verdict import ConnectionVerdict, EarlyData, Handshake, Note, Offered
from tlssniff.tls.ciphers import cipher_name
from tlssniff.flow.limits import END_EVICTED, END_GAP
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.ja4 import ja4_pair
from tlssniff.tls.wire import (
    AFTER_SH_ALERT,
    AFTER_SH_CCS,
    HS_CERTIFICATE,
    HS_CERTIFICATE_REQUEST,
    HS_CERTIFICATE_STATUS,
    HS_NEW_SESSION_TICKET,
    HS_SERVER_HELLO_DONE,
    HS_SERVER_KEY_EXCHANGE,
    version_name,
)

# TLS <= 1.2 messages that can only follow the ServerHello of a full handshake (RFC 5246 §7.3).
_FULL_HANDSHAKE_NEXT: Final = frozenset(
    {
        HS_CERTIFICATE,
        HS_SERVER_KEY_EXCHANGE,
        HS_CERTIFICATE_REQUEST,
        HS_SERVER_HELLO_DONE,
        HS_CERTIFICATE_STATUS,
    }
)

# A PSK identity this long can be a ticket in the RFC 5077 §4 layout (key_name[16] iv[16]
# encrypted_state mac[32]: OpenSSL, GnuTLS, nginx, haproxy); shorter ones are session ids of
# a server-side cache (OpenSSL's stateful TLS 1.3 tickets are 32 bytes) and carry no key name.
MIN_TICKET_IDENTITY: Final = 16 + 16 + 32 + 1


def classify(
    t: HandshakeTracker,
    v: ConnectionVerdict,
    issued_session_id: Callable[[bytes], bool] = lambda sid: False,
    end_reason: int | None = None,
    early_data_seen: bool = False,
) -> ConnectionVerdict:
    """Fill ``v``'s verdict fields from the tracker's facts; returns ``v``.

    ``early_data_seen``: the transport saw 0-RTT data itself (QUIC 0-RTT packets)."""
    chs = t.client_hellos
    sh = t.server_hello
    if not chs:
        # No complete ClientHello: evicted or cut by a gap before it was whole, else malformed.
        v.note = (_error_note(t) or _end_note(end_reason)
                  or (Note.GAP if end_reason == END_GAP else Note.MALFORMED))
        return v
    ch = chs[0]
    v.sni = ch.sni
    v.alpn_offered = list(ch.alpn)
    v.hrr = t.hrr
    frames: list[int] = []
    if t.ch_frame:
        frames.append(t.ch_frame)
    if t.sh_frame:
        frames.append(t.sh_frame)
    v.frames = frames
    v.alert = t.alert_text()
    v.established = t.established
    if ch.session_id:
        v.session_id = ch.session_id.hex()
    tickets = [c.ticket for c in chs if c.ticket]
    if tickets:
        v.ticket_len = len(tickets[0])
        v.ticket_key_name = tickets[0][:16].hex()
        v.ticket_hash = short_hash(tickets[0])
    psks = [c.psk_identities[0] for c in chs if c.psk_identities]
    if psks:
        v.psk_identity_hash = short_hash(psks[0])
        if len(psks[0]) >= MIN_TICKET_IDENTITY:
            v.psk_key_name = psks[0][:16].hex()
    if not ch.sslv2:
        v.ja4, v.ja4_base = ja4_pair(ch, v.transport)
    if t.ch_ts:
        v.client_hello_ts = t.ch_ts
    if t.sh_ts:
        v.server_hello_ts = t.sh_ts
    if t.last_ts:
        v.handshake_end_ts = t.last_ts
    # A loop, not max() of a generator: compiled, max() is a builtin looked up and called on a
    # generator object (1,000 instructions a connection; callgrind, bench/out/handshakes.pcap).
    most = 0
    for c in chs:
        if len(c.psk_identities) > most:
            most = len(c.psk_identities)
    v.psk_identities = most
    if sh is not None:
        v.version = version_name(sh.version)
        v.cipher = cipher_name(sh.cipher_suite)
        v.alpn = sh.alpn

    # offered: psk > ticket > session_id (RFC 5077 §3.4: a ticket comes with a session id).
    if v.psk_identities:
        v.offered = Offered.PSK
    elif tickets:
        v.offered = Offered.TICKET
    elif ch.session_id and _session_id_is_offer(ch, sh, issued_session_id):
        v.offered = Offered.SESSION_ID

    if t.sslv2_server and sh is None:
        # An SSL 2.0 server answered: a protocol without the resumption tlssniff reads.
        v.version = "SSLv2"
        v.note = Note.SSLV2
    elif sh is None:
        v.note = _unanswered_note(t, end_reason)
    elif sh.tls13:
        # RFC 8446 §4.2.11: only a pre_shared_key in the ServerHello accepts a PSK; the echoed
        # legacy_session_id (§4.1.3) proves nothing.
        v.handshake = Handshake.PSK if sh.psk_selected else Handshake.FULL
    else:
        nxt = t.after_sh
        if nxt == AFTER_SH_CCS or nxt == HS_NEW_SESSION_TICKET:
            # RFC 5246 §7.3 / RFC 5077 §3.1: the abbreviated handshake goes straight to
            # (NewSessionTicket and) ChangeCipherSpec.
            v.handshake = Handshake.TICKET if v.offered is Offered.TICKET else Handshake.SESSION_ID
            if v.offered is Offered.NONE and ch.session_id:
                v.offered = Offered.SESSION_ID
        elif nxt in _FULL_HANDSHAKE_NEXT:
            v.handshake = Handshake.FULL
            if sh.session_id:
                v.issued_session_id = sh.session_id.hex()
        elif nxt == AFTER_SH_ALERT:
            v.note = Note.SERVER_ALERT
        elif nxt is None:
            v.note = _error_note(t) or (Note.GAP if end_reason == END_GAP else _end_note(end_reason)) or Note.SERVER_HELLO_ONLY
        else:
            v.note = Note.MALFORMED
    if t.ticket is not None:
        v.issued_ticket = True
        v.ticket_lifetime = t.ticket.lifetime_hint
        if t.ticket.ticket:
            v.issued_ticket_key_name = t.ticket.ticket[:16].hex()
            v.issued_ticket_hash = short_hash(t.ticket.ticket)

    # early_data (RFC 8446 §4.2.10): a HelloRetryRequest or a refused PSK rejects 0-RTT.
    early = early_data_seen
    for c in chs:  # a loop, not any() of a generator (see psk_identities above)
        if c.early_data:
            early = True
    if early:
        if t.hrr:
            v.early_data = EarlyData.REJECTED
        elif sh is not None and v.handshake is Handshake.FULL:
            v.early_data = EarlyData.REJECTED
        else:
            v.early_data = EarlyData.OFFERED
    return v


def short_hash(data: bytes) -> str:
    """A ticket or PSK identity as a short, stable, non-replayable reference.

    The same ticket comes back: issued in one connection's NewSessionTicket, presented in the
    next ones' ClientHellos (10,301 hashes of 430 distinct values in the first 300,000 frames
    of bench/out/handshakes.pcap). A SHA-256 through hashlib is 11,000 instructions (OpenSSL's
    context set-up and copy); a lookup of the bytes is a tenth of that (callgrind,
    ``analyze -f jsonl``), so the hashes are kept in a bounded table (cleared at 4,096)."""
    text = _SHORT_HASHES.get(data)
    if text is None:
        if len(_SHORT_HASHES) >= 4096:
            _SHORT_HASHES.clear()
        text = _SHORT_HASHES[data] = hashlib.sha256(data).digest()[:8].hex()
    return text


_SHORT_HASHES: Final[dict[bytes, str]] = {}


def _session_id_is_offer(ch, sh, issued: Callable[[bytes], bool]) -> bool:
    """A TLS 1.3 client's compatibility-mode session id is random, not an offer (RFC 8446 D.4)."""
    if sh is not None and sh.tls13:
        return False
    if not ch.offers_tls13:
        return True
    if sh is not None and sh.session_id == ch.session_id:
        return True
    return issued(ch.session_id)


def _error_note(t: HandshakeTracker) -> Note | None:
    if t.error == "oversized":
        return Note.OVERSIZED
    if t.error == "malformed":
        return Note.MALFORMED
    return None


def _end_note(end_reason: int | None) -> Note | None:
    if end_reason == END_EVICTED:
        return Note.EVICTED
    return None


def _unanswered_note(t: HandshakeTracker, end_reason: int | None) -> Note:
    err = _error_note(t)
    if err is not None:
        return err
    if t.alert is not None and t.alert_from_server:
        return Note.SERVER_ALERT
    if end_reason == END_GAP:
        return Note.GAP
    return _end_note(end_reason) or Note.NO_SERVER_HELLO
