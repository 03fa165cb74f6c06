"""tlssniff: a passive TLS handshake analyzer that proves whether session resumption works."""

__version__ = "0.1.0"
