"""TLS and DTLS wire numbers, named once (RFC 8446, RFC 5246, RFC 6347, RFC 9147, IANA registries).

Every parser and analysis module compares against the ``Final`` ints below, never against a
bare literal and never against an enum member: compiled (setup.py), a ``Final`` int compare
costs what a literal costs (2 ns), an ``IntEnum`` compare eight times that. The ``IntEnum``
classes at the end are for names and display only; they are built from the same ints, and
``tests/test_tls_wire.py`` keeps the two in step.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

# Record content types (RFC 8446 §5.1, RFC 6520, RFC 9147 §4).
CT_CHANGE_CIPHER_SPEC: Final = 20
CT_ALERT: Final = 21
CT_HANDSHAKE: Final = 22
CT_APPLICATION_DATA: Final = 23
CT_HEARTBEAT: Final = 24
CT_ACK: Final = 26  # DTLS 1.3 (RFC 9147 §7)

# Handshake message types (RFC 8446 §4, RFC 5246 §7.4, RFC 6347 §4.2.1).
HS_HELLO_REQUEST: Final = 0
HS_CLIENT_HELLO: Final = 1
HS_SERVER_HELLO: Final = 2
HS_HELLO_VERIFY_REQUEST: Final = 3
HS_NEW_SESSION_TICKET: Final = 4
HS_END_OF_EARLY_DATA: Final = 5
HS_HELLO_RETRY_REQUEST_DRAFT: Final = 6  # TLS 1.3 drafts <= 21 had a message of its own
HS_ENCRYPTED_EXTENSIONS: Final = 8
HS_CERTIFICATE: Final = 11
HS_SERVER_KEY_EXCHANGE: Final = 12
HS_CERTIFICATE_REQUEST: Final = 13
HS_SERVER_HELLO_DONE: Final = 14
HS_CERTIFICATE_VERIFY: Final = 15
HS_CLIENT_KEY_EXCHANGE: Final = 16
HS_FINISHED: Final = 20
HS_CERTIFICATE_STATUS: Final = 22

# What the server sent right after the final ServerHello, besides a handshake message type
# (HandshakeTracker.after_sh): negative so they never collide with an HS_* number.
AFTER_SH_CCS: Final = -20
AFTER_SH_ALERT: Final = -21
AFTER_SH_ENCRYPTED: Final = -23

# Extension types (IANA "TLS ExtensionType Values").
EXT_SERVER_NAME: Final = 0
EXT_SUPPORTED_GROUPS: Final = 10
EXT_SIGNATURE_ALGORITHMS: Final = 13
EXT_PADDING: Final = 21
EXT_ALPN: Final = 16
EXT_SESSION_TICKET: Final = 35
EXT_KEY_SHARE_DRAFT: Final = 40  # TLS 1.3 drafts <= 22
EXT_PRE_SHARED_KEY: Final = 41
EXT_EARLY_DATA: Final = 42
EXT_SUPPORTED_VERSIONS: Final = 43
EXT_KEY_SHARE: Final = 51

# server_name_list entry type (RFC 6066 §3).
SNI_HOST_NAME: Final = 0

# Alert levels and descriptions (RFC 8446 §6).
ALERT_WARNING: Final = 1
ALERT_FATAL: Final = 2
ALERT_LEVEL_NAMES: Final = {ALERT_WARNING: "warning", ALERT_FATAL: "fatal"}
ALERT_NAMES: Final = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
}

# SSL 2.0 message type of a CLIENT-HELLO (RFC 5246 Appendix E.2).
SSL2_MT_CLIENT_HELLO: Final = 1

# Protocol versions.
SSL2: Final = 0x0002
SSL3: Final = 0x0300
TLS10: Final = 0x0301
TLS11: Final = 0x0302
TLS12: Final = 0x0303
TLS13: Final = 0x0304
DTLS10: Final = 0xFEFF  # RFC 4347 (DTLS versions count down)
DTLS12: Final = 0xFEFD  # RFC 6347
DTLS13: Final = 0xFEFC  # RFC 9147: DTLS 1.3 keeps TLS 1.3's resumption rules
# High bytes of pre-RFC TLS 1.3 code points: IETF drafts, BoringSSL experiments, Facebook's.
TLS13_DRAFT_HI: Final = 0x7F
TLS13_EXPERIMENT_HI: Final = 0x7E
TLS13_FB_HI: Final = 0xFB

VERSION_NAMES: Final = {
    SSL2: "SSLv2",
    SSL3: "SSLv3",
    TLS10: "TLSv1.0",
    TLS11: "TLSv1.1",
    TLS12: "TLSv1.2",
    TLS13: "TLSv1.3",
    DTLS10: "DTLSv1.0",
    DTLS12: "DTLSv1.2",
    DTLS13: "DTLSv1.3",
}

# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM: Final = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def version_name(code: int) -> str:
    """Wire version to the name users know; TLS 1.3 drafts and experiments keep their number."""
    name = VERSION_NAMES.get(code)
    if name:
        return name
    hi = code >> 8
    if hi == TLS13_DRAFT_HI:
        return f"TLSv1.3-draft{code & 0xFF}"
    if hi == TLS13_EXPERIMENT_HI:
        return f"TLSv1.3-experiment{code & 0xFF}"
    if hi == TLS13_FB_HI:  # 0xfb17: draft 23
        return f"TLSv1.3-fb{code & 0xFF}"
    return f"0x{code:04x}"


def is_tls13(code: int) -> bool:
    """True for TLS 1.3 and its drafts and experiments (all share TLS 1.3's resumption rules)."""
    hi = code >> 8
    return (
        code == TLS13
        or code == DTLS13
        or hi == TLS13_DRAFT_HI
        or hi == TLS13_EXPERIMENT_HI
        or hi == TLS13_FB_HI
    )


def is_grease(code: int) -> bool:
    """RFC 8701: the reserved 0x?a?a values a client offers to keep the ecosystem tolerant."""
    return code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF


# Names for display only (never compare against these in per-record code; see the docstring).


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = CT_CHANGE_CIPHER_SPEC
    ALERT = CT_ALERT
    HANDSHAKE = CT_HANDSHAKE
    APPLICATION_DATA = CT_APPLICATION_DATA
    HEARTBEAT = CT_HEARTBEAT
    ACK = CT_ACK


class HandshakeType(IntEnum):
    HELLO_REQUEST = HS_HELLO_REQUEST
    CLIENT_HELLO = HS_CLIENT_HELLO
    SERVER_HELLO = HS_SERVER_HELLO
    HELLO_VERIFY_REQUEST = HS_HELLO_VERIFY_REQUEST
    NEW_SESSION_TICKET = HS_NEW_SESSION_TICKET
    END_OF_EARLY_DATA = HS_END_OF_EARLY_DATA
    HELLO_RETRY_REQUEST_DRAFT = HS_HELLO_RETRY_REQUEST_DRAFT
    ENCRYPTED_EXTENSIONS = HS_ENCRYPTED_EXTENSIONS
    CERTIFICATE = HS_CERTIFICATE
    SERVER_KEY_EXCHANGE = HS_SERVER_KEY_EXCHANGE
    CERTIFICATE_REQUEST = HS_CERTIFICATE_REQUEST
    SERVER_HELLO_DONE = HS_SERVER_HELLO_DONE
    CERTIFICATE_VERIFY = HS_CERTIFICATE_VERIFY
    CLIENT_KEY_EXCHANGE = HS_CLIENT_KEY_EXCHANGE
    FINISHED = HS_FINISHED
    CERTIFICATE_STATUS = HS_CERTIFICATE_STATUS


class ExtensionType(IntEnum):
    SERVER_NAME = EXT_SERVER_NAME
    SUPPORTED_GROUPS = EXT_SUPPORTED_GROUPS
    SIGNATURE_ALGORITHMS = EXT_SIGNATURE_ALGORITHMS
    PADDING = EXT_PADDING
    ALPN = EXT_ALPN
    SESSION_TICKET = EXT_SESSION_TICKET
    KEY_SHARE_DRAFT = EXT_KEY_SHARE_DRAFT
    PRE_SHARED_KEY = EXT_PRE_SHARED_KEY
    EARLY_DATA = EXT_EARLY_DATA
    SUPPORTED_VERSIONS = EXT_SUPPORTED_VERSIONS
    KEY_SHARE = EXT_KEY_SHARE

