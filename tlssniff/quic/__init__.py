"""QUIC (RFC 9000/9001, v2 RFC 9369): the TLS 1.3 handshake inside Initial packets, read passively."""
