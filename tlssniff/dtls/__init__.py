"""DTLS (RFC 4347, 6347, 9147): records and handshake fragments, fed to the TLS tracker."""
