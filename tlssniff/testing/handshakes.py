"""Real TLS handshakes, recorded as the exact bytes each side put on the wire.

A client :class:`ssl.SSLObject` and a server :class:`ssl.SSLObject` talk through memory BIOs;
:func:`run_connection` pumps one side's output into the other and records every flight as a
``(direction, bytes)`` chunk (``"c"``: client to server, ``"s"``: server to client). No sockets,
no threads: one handshake costs a few hundred microseconds of OpenSSL work.

Each scenario returns a :class:`Transcript` plus a ``truth`` dict whose fields mean exactly what
``docs/verdicts.md`` says. ``offered`` follows from what the scenario presented (a session or not,
tickets on or off, TLS 1.2 or 1.3); ``handshake`` follows from the client's own report
(``SSLObject.session_reused``) and the negotiated version. The scenario's expectation is checked
against that report at generation time: a disagreement raises :class:`ScenarioMismatch`.

0-RTT cannot be produced with Python's ``ssl``; those transcripts are recorded from OpenSSL's
``s_client``/``s_server`` by :mod:`tlssniff.testing.record_openssl` and loaded from
``fixtures/`` by :func:`load_openssl_templates`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# RFC 8446 §4.1.3: the ServerHello.random of a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Every name the test servers answer for; the certificate carries them all as SANs.
SNI_NAMES = (
    "www.example.com",
    "api.example.com",
    "cdn.example.net",
    "login.example.org",
    "static.example.net",
    "mail.example.com",
    "shop.example.org",
    "ws.example.com",
)


class ScenarioMismatch(AssertionError):
    """A scenario's expected outcome disagrees with what the TLS stack reports."""


@dataclass(slots=True)
class Transcript:
    """One TLS connection: the bytes each side sent, in the order they were sent."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    truth: dict = field(default_factory=dict)

    def add(self, direction: str, data: bytes) -> None:
        if data:
            self.chunks.append((direction, data))

    def bytes_from(self, direction: str) -> bytes:
        return b"".join(d for s, d in self.chunks if s == direction)


# --------------------------------------------------------------------------------------------
# Certificates: one ECDSA P-256 self-signed certificate with every SNI name as SAN, made once
# and cached in the temp dir (keyed by the name list, so a change of names makes a new one).


def cert_files() -> tuple[Path, Path]:
    """Paths of ``(cert.pem, key.pem)``, creating them on first use."""
    tag = hashlib.sha256("|".join(SNI_NAMES).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"tlssniff-testing-certs-{tag}"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI_NAMES[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.DNSName(n) for n in SNI_NAMES] + [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(private, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: concurrent first uses (pytest-xdist) never read half a file.
    for path, data in (
        (key, private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )),
        (cert, certificate.public_bytes(serialization.Encoding.PEM)),
    ):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return cert, key


# --------------------------------------------------------------------------------------------
# Contexts


def server_context(*, hrr: bool = False, no_ticket: bool = False) -> ssl.SSLContext:
    """A server context: its own ticket keys and its own session cache.

    ``hrr``: accept only secp384r1, which OpenSSL's client does not key-share first (it sends an
    X25519 share), so every TLS 1.3 ClientHello gets a HelloRetryRequest.
    """
    cert, key = cert_files()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if no_ticket:
        ctx.options |= ssl.OP_NO_TICKET
    if hrr:
        ctx.set_ecdh_curve("secp384r1")
    return ctx


@dataclass(frozen=True, slots=True)
class ClientProfile:
    """What kind of client: its versions, tickets on or off, ALPN."""

    version: str  # "TLSv1.2" (maximum) or "TLSv1.3" (minimum)
    tickets: bool = True
    alpn: bool = False


_CLIENT_CONTEXTS: dict[ClientProfile, ssl.SSLContext] = {}


def client_context(profile: ClientProfile) -> ssl.SSLContext:
    """One shared context per profile: a session resumes only on the context that made it."""
    ctx = _CLIENT_CONTEXTS.get(profile)
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if profile.version == "TLSv1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if not profile.tickets:
            ctx.options |= ssl.OP_NO_TICKET
        if profile.alpn:
            ctx.set_alpn_protocols(["h2", "http/1.1"])
        _CLIENT_CONTEXTS[profile] = ctx
    return ctx


# --------------------------------------------------------------------------------------------
# The pump


def _step(obj: ssl.SSLObject) -> bool:
    """Advance a handshake; True once it is complete."""
    try:
        obj.do_handshake()
        return True
    except ssl.SSLWantReadError:
        return False


def _read_all(obj: ssl.SSLObject) -> bytes:
    """Every byte of application data the object can decrypt now (processes tickets too)."""
    out = []
    while True:
        try:
            data = obj.read(65536)
        except ssl.SSLWantReadError:
            break
        except ssl.SSLZeroReturnError:
            break
        if not data:
            break
        out.append(data)
    return b"".join(out)


def _unwrap(obj: ssl.SSLObject) -> None:
    try:
        obj.unwrap()
    except ssl.SSLWantReadError:
        pass


@dataclass(slots=True)
class Connection:
    """A finished connection: transcript plus the client's own report."""

    transcript: Transcript
    session: ssl.SSLSession | None
    session_reused: bool
    version: str
    alpn: str | None


def run_connection(
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    *,
    sni: str | None = None,
    session: ssl.SSLSession | None = None,
    request: bytes = b"",
    response_bytes: int = 0,
    close_notify: bool = True,
    want_session: bool = True,
) -> Connection:
    """Run one real TLS connection between two memory-BIO endpoints and record its bytes.

    After the handshake the client sends ``request`` (which also makes it read the server's
    TLS 1.3 NewSessionTicket, so that ``session`` becomes resumable) and the server answers with
    ``response_bytes`` bytes of application data, really encrypted.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=sni,
                                 session=session)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    t = Transcript()

    def flush_client() -> None:
        data = c_out.read()
        if data:
            t.add("c", data)
            s_in.write(data)

    def flush_server() -> None:
        data = s_out.read()
        if data:
            t.add("s", data)
            c_in.write(data)

    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            client_done = _step(client)
        flush_client()
        if not server_done:
            server_done = _step(server)
        flush_server()
        if client_done and server_done:
            break
    else:  # pragma: no cover - a stuck handshake is a bug in the scenario
        raise ScenarioMismatch("handshake did not complete")

    # The client reads what the server sent after its Finished (TLS 1.3 tickets), then sends
    # its request; the server answers.
    _read_all(client)
    if request:
        client.write(request)
    flush_client()
    got = _read_all(server)
    if got != request:
        raise ScenarioMismatch("server did not receive the client's request")
    if response_bytes:
        body = _payload(response_bytes)
        header = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        data = header + body
        for i in range(0, len(data), 16384):
            server.write(data[i : i + 16384])
            # Flush every 64 KB so the transcript has server flights of a realistic size.
            if (i + 16384) % 65536 == 0:
                flush_server()
        flush_server()
        if len(_read_all(client)) != len(data):
            raise ScenarioMismatch("client did not receive the response")
    elif request:
        flush_server()
        _read_all(client)
    if close_notify:
        # Both sides send close_notify. This matters: OpenSSL drops a TLS 1.2 session from
        # the server's cache when the SSL object is freed without having sent one.
        _unwrap(client)
        flush_client()
        _unwrap(server)
        flush_server()
        _unwrap(client)
    return Connection(
        transcript=t,
        # Reading .session costs ~0.4 ms (CPython copies it through DER for TLS 1.3).
        session=client.session if want_session else None,
        session_reused=client.session_reused,
        version=client.version(),
        alpn=client.selected_alpn_protocol(),
    )


_PAYLOAD = hashlib.shake_256(b"tlssniff bulk").digest(1 << 16)


def _payload(n: int) -> bytes:
    reps = n // len(_PAYLOAD) + 1
    return (_PAYLOAD * reps)[:n]


# --------------------------------------------------------------------------------------------
# Wire checks: a few facts the truth relies on, read back from the recorded bytes.


def handshake_messages(data: bytes) -> list[tuple[int, bytes]]:
    """``(type, body)`` of the cleartext handshake messages at the start of ``data``.

    Stops at the first record that is not a handshake record (ChangeCipherSpec, encrypted
    application_data): enough for checking ServerHello and ClientHello contents.
    """
    stream = bytearray()
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 22:
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        stream += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    out = []
    i = 0
    while i + 4 <= len(stream):
        length = int.from_bytes(stream[i + 1 : i + 4], "big")
        out.append((stream[i], bytes(stream[i + 4 : i + 4 + length])))
        i += 4 + length
    return out


def first_server_hello_is_hrr(t: Transcript) -> bool:
    first = next((d for s, d in t.chunks if s == "s"), b"")
    msgs = handshake_messages(first)
    return bool(msgs) and msgs[0][0] == 2 and msgs[0][1][2:34] == HRR_RANDOM


def client_hello_extensions(t: Transcript) -> dict[int, bytes]:
    """Extensions of the client's first ClientHello: ``{type: body}``."""
    first = next(d for s, d in t.chunks if s == "c")
    msgs = handshake_messages(first)
    assert msgs and msgs[0][0] == 1, "the client's first flight is not a ClientHello"
    body = msgs[0][1]
    i = 2 + 32
    i += 1 + body[i]  # session id
    i += 2 + int.from_bytes(body[i : i + 2], "big")  # cipher suites
    i += 1 + body[i]  # compression
    end = i + 2 + int.from_bytes(body[i : i + 2], "big")
    i += 2
    exts = {}
    while i + 4 <= end:
        etype = int.from_bytes(body[i : i + 2], "big")
        elen = int.from_bytes(body[i + 2 : i + 4], "big")
        exts[etype] = body[i + 4 : i + 4 + elen]
        i += 4 + elen
    return exts


EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_EARLY_DATA = 42


# --------------------------------------------------------------------------------------------
# Scenarios


# kind -> (client profile, what it presents, expected handshake)
#   presents: None (no session), "own" (a session from this server member), "foreign" (a
#   session from another member of the same server address, which has other keys and cache)
SCENARIOS: dict[str, tuple[ClientProfile, str | None, str]] = {
    "tls12_full": (ClientProfile("TLSv1.2"), None, "full"),
    "tls12_sid_resume": (ClientProfile("TLSv1.2", tickets=False), "own", "session_id"),
    "tls12_ticket_resume": (ClientProfile("TLSv1.2"), "own", "ticket"),
    "tls12_sid_refused": (ClientProfile("TLSv1.2", tickets=False), "foreign", "full"),
    "tls12_ticket_refused": (ClientProfile("TLSv1.2"), "foreign", "full"),
    "tls13_full": (ClientProfile("TLSv1.3"), None, "full"),
    "tls13_psk_resume": (ClientProfile("TLSv1.3"), "own", "psk"),
    "tls13_psk_refused": (ClientProfile("TLSv1.3"), "foreign", "full"),
    "tls13_hrr_full": (ClientProfile("TLSv1.3"), None, "full"),
    "tls13_hrr_psk": (ClientProfile("TLSv1.3"), "own", "psk"),
}
# Scenarios whose server member restricts groups (HelloRetryRequest on every TLS 1.3 hello).
HRR_SCENARIOS = frozenset({"tls13_hrr_full", "tls13_hrr_psk"})
# The full-handshake kind that creates the sessions a resumption scenario needs.
SESSION_SOURCE = {
    "tls12_sid_resume": "tls12_sid_full",
    "tls12_sid_refused": "tls12_sid_full",
    "tls12_ticket_resume": "tls12_full",
    "tls12_ticket_refused": "tls12_full",
    "tls13_psk_resume": "tls13_full",
    "tls13_psk_refused": "tls13_full",
    "tls13_hrr_psk": "tls13_hrr_full",
}
# A full handshake with tickets off: the session-id scenarios' sessions come from these.
SCENARIOS["tls12_sid_full"] = (ClientProfile("TLSv1.2", tickets=False), None, "full")


def expected_offered(profile: ClientProfile, presented: bool) -> str:
    if not presented:
        return "none"
    if profile.version == "TLSv1.3":
        return "psk"
    return "ticket" if profile.tickets else "session_id"


def verify(conn: Connection, kind: str, profile: ClientProfile, presented: bool,
           expect: str, hrr: bool) -> dict:
    """The truth of one connection, checked against the client's report and the wire."""
    t = conn.transcript
    if conn.version != profile.version:
        raise ScenarioMismatch(f"{kind}: negotiated {conn.version}, expected {profile.version}")
    resumed_expected = expect != "full"
    if conn.session_reused != resumed_expected:
        raise ScenarioMismatch(
            f"{kind}: client reports session_reused={conn.session_reused}, "
            f"scenario expected handshake {expect!r}"
        )
    offered = expected_offered(profile, presented)
    exts = client_hello_extensions(t)
    wire_offer = (
        "psk" if EXT_PRE_SHARED_KEY in exts
        else "ticket" if exts.get(EXT_SESSION_TICKET)
        else "session_id" if presented else "none"
    )
    if wire_offer != offered:
        raise ScenarioMismatch(f"{kind}: ClientHello offers {wire_offer}, expected {offered}")
    if first_server_hello_is_hrr(t) != hrr:
        raise ScenarioMismatch(f"{kind}: HelloRetryRequest on the wire != {hrr}")
    handshake = expect if conn.session_reused else "full"
    return {
        "version": conn.version,
        "offered": offered,
        "handshake": handshake,
        "resumed": handshake != "full",
        "hrr": hrr,
        "early_data": "none",
    }


def run_scenario(
    kind: str,
    server_ctx: ssl.SSLContext,
    *,
    session: ssl.SSLSession | None = None,
    sni: str | None = None,
    alpn: bool = False,
    response_bytes: int = 0,
    want_session: bool = True,
) -> Connection:
    """Run scenario ``kind`` against ``server_ctx`` and fill ``transcript.truth``.

    The caller supplies the session for resumption scenarios (``own``: made on ``server_ctx``;
    ``foreign``: made on another context, so the server must refuse it).
    """
    profile, presents, expect = SCENARIOS[kind]
    if alpn:
        profile = ClientProfile(profile.version, profile.tickets, alpn=True)
    if presents and session is None:
        raise ValueError(f"scenario {kind} needs a session")
    if not presents:
        session = None
    host = sni or "www.example.com"
    request = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode()
    conn = run_connection(client_context(profile), server_ctx, sni=sni, session=session,
                          request=request, response_bytes=response_bytes,
                          want_session=want_session)
    truth = verify(conn, kind, profile, session is not None, expect, kind in HRR_SCENARIOS)
    truth["sni"] = sni
    truth["scenario"] = kind
    conn.transcript.truth = truth
    return conn


# --------------------------------------------------------------------------------------------
# OpenSSL-recorded templates (0-RTT)


@dataclass(slots=True)
class Template:
    """A recorded connection: chunks plus truth, re-addressable to any endpoints."""

    name: str
    group: str  # templates of one group are one client's connections, in order
    chunks: list[tuple[str, bytes]]
    truth: dict


def load_openssl_templates(folder: Path = FIXTURES) -> list[Template]:
    """The 0-RTT transcripts recorded by :mod:`tlssniff.testing.record_openssl`."""
    index = folder / "openssl_templates.json"
    if not index.exists():
        return []
    out = []
    for entry in json.loads(index.read_text()):
        blob = (folder / entry["file"]).read_bytes()
        chunks, pos = [], 0
        for direction, length in entry["chunks"]:
            chunks.append((direction, blob[pos : pos + length]))
            pos += length
        out.append(Template(entry["name"], entry["group"], chunks, entry["truth"]))
    return out
