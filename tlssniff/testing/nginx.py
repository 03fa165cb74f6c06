"""nginx configurations for throwaway TLS servers on loopback (tests and capture scripts)."""

from __future__ import annotations

import os
import shutil


def nginx_binary() -> str | None:
    """nginx lives in /usr/sbin, which may not be on a non-root PATH."""
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )


def http_head(directory, cert, key, worker_connections: int = 256) -> str:
    """The start of an nginx.conf kept entirely in ``directory``, running in the foreground,
    with one certificate for every server; it ends inside ``http {``: the caller appends its
    ``server`` blocks and the closing brace."""
    d = directory
    return f"""\
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
"""
