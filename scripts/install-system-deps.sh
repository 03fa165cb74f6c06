#!/bin/sh
# Install the system tools tlssniff's tests and capture scripts use (Debian/Ubuntu, as root).
# Idempotent and non-interactive: when every tool is present it only checks and exits.
set -eu

export DEBIAN_FRONTEND=noninteractive

# command -> Debian package providing it
need() {
    command -v "$1" >/dev/null 2>&1 || MISSING="$MISSING $2"
}

MISSING=""
need openssl openssl
need tcpdump tcpdump
need tshark tshark
need mergecap tshark
need editcap tshark
need ip iproute2
need ps procps
# headless browser for the report tests (tests/test_report.py renders report.html)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
    MISSING="$MISSING chromium"
# nginx and apache2 live in /usr/sbin, which may not be on a non-root PATH.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    MISSING="$MISSING nginx-light"
fi
# Apache httpd with mod_ssl (shmcb session cache): the probe and diagnostics tests use it.
if ! command -v apache2 >/dev/null 2>&1 && [ ! -x /usr/sbin/apache2 ]; then
    MISSING="$MISSING apache2"
fi
# haproxy (TLS server and TCP load balancer): scripts/make_diagnostic_captures.py's clusters.
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    MISSING="$MISSING haproxy"
fi

if [ -z "$MISSING" ]; then
    echo "system deps: all present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "system deps missing:$MISSING (run this script as root)" >&2
    exit 1
fi

# Deduplicate the package list.
PKGS=$(printf '%s\n' $MISSING | sort -u | tr '\n' ' ')
echo "system deps: installing $PKGS"

# tshark's wireshark-common asks whether non-root users may capture; answer it up front.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

apt-get update
# nginx-light is gone from newer Debian releases; fall back to nginx.
if ! apt-get install -y --no-install-recommends $PKGS; then
    PKGS=$(echo "$PKGS" | sed 's/nginx-light/nginx/')
    apt-get install -y --no-install-recommends $PKGS
fi
echo "system deps: done"
