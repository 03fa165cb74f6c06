"""QUIC Initial packet protection (RFC 9001 §5), with the ``cryptography`` package only.

Initial keys are public by design: both ends derive them from the client's first Destination
Connection ID (§5.2), so a passive observer can read the Initial packets (and only those).
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF  # RFC 9369

# RFC 9001 §5.2 (v1), RFC 9369 §3.3.1 (v2), and the draft salts still seen in old captures.
_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")  # drafts 29-32
_SALT_DRAFT23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")  # drafts 23-28


def initial_salt(version: int) -> bytes | None:
    """The Initial salt of a QUIC version, or None for a version tlssniff cannot read."""
    if version == VERSION_1:
        return _SALT_V1
    if version == VERSION_2:
        return _SALT_V2
    if 0xFF00001D <= version <= 0xFF000020:
        return _SALT_DRAFT29
    if 0xFF000017 <= version <= 0xFF00001C:
        return _SALT_DRAFT23
    return None


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 §2.2) with SHA-256: HMAC(salt, ikm)."""
    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def hkdf_expand_label(secret: bytes, label: bytes, length: int, context: bytes = b"") -> bytes:
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 §7.1) with SHA-256."""
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + bytes([len(context)]) + context
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


class DirectionKeys:
    """One direction's Initial keys: AEAD_AES_128_GCM and AES-128 header protection (§5.4.3)."""

    __slots__ = ("key", "iv", "hp", "_aead", "_hp_cipher")

    def __init__(self, key: bytes, iv: bytes, hp: bytes):
        self.key = key
        self.iv = iv
        self.hp = hp
        self._aead = AESGCM(key)
        self._hp_cipher = Cipher(algorithms.AES(hp), modes.ECB())

    def mask(self, sample: bytes) -> bytes:
        """The header protection mask: AES-ECB(hp, sample) (RFC 9001 §5.4.3)."""
        enc = self._hp_cipher.encryptor()
        return enc.update(sample) + enc.finalize()

    def open(self, pn: int, header: bytes, ciphertext: bytes) -> bytes | None:
        """Decrypt a payload (§5.3: nonce = iv XOR packet number); None when it does not open."""
        nonce = (int.from_bytes(self.iv, "big") ^ pn).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            return None


def initial_keys(version: int, dcid: bytes) -> tuple[DirectionKeys, DirectionKeys] | None:
    """(client, server) Initial keys from the client's Destination Connection ID (§5.2)."""
    salt = initial_salt(version)
    if salt is None:
        return None
    initial_secret = hkdf_extract(salt, dcid)
    if version == VERSION_2:
        labels = (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")  # RFC 9369 §3.3.2
    else:
        labels = (b"quic key", b"quic iv", b"quic hp")
    out = []
    for side in (b"client in", b"server in"):
        secret = hkdf_expand_label(initial_secret, side, 32)
        out.append(
            DirectionKeys(
                hkdf_expand_label(secret, labels[0], 16),
                hkdf_expand_label(secret, labels[1], 12),
                hkdf_expand_label(secret, labels[2], 16),
            )
        )
    return out[0], out[1]
