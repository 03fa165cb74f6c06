"""tlssniff: a passive TLS handshake analyzer that proves whether session resumption works."""

from tlssniff import _native

__version__ = "0.1.0"

_native.check()
