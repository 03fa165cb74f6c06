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
need ss iproute2
need ps procps
need git git
# make setup: a virtual environment (Debian splits venv/ensurepip out of python3) and a C
# compiler with Python's headers for the mypyc build (without them the pure-Python modules run).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || MISSING="$MISSING python3-venv"
need cc gcc
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1 || MISSING="$MISSING python3-dev"
# tlssniff live loads libpcap with ctypes (its only system requirement).
python3 -c 'import ctypes.util, sys; sys.exit(ctypes.util.find_library("pcap") is None)' \
    >/dev/null 2>&1 || MISSING="$MISSING libpcap0.8"
# live --metrics tests: a real Prometheus server scrapes tlssniff; promtool checks the
# exposition and runs the alert rules' unit tests (contrib/prometheus).
need prometheus prometheus
need promtool prometheus
# the systemd unit's test (contrib/systemd): systemd-analyze verify, setpriv --ambient-caps
need systemd-analyze systemd
need setpriv util-linux
need capsh libcap2-bin
# bench/live_load.py --replay (bench only): the recorded load replayed onto a veth
need tcpreplay tcpreplay
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
# scripts/make_preamble_captures.py: TLS behind haproxy, tinyproxy and dante, curl as client.
need curl curl
for tool in haproxy:haproxy tinyproxy:tinyproxy danted:dante-server; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1 && [ ! -x "/usr/sbin/${tool%%:*}" ] && \
            [ ! -x "/usr/bin/${tool%%:*}" ]; then
        MISSING="$MISSING ${tool#*:}"
    fi
done

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
