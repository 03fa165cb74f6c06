#!/usr/bin/env bash
# The default install is the whole tool: in a fresh virtual environment, `pip install .` (what
# pip picks today) and the same with the oldest typer supported (pyproject.toml's lower bound),
# then through each install's console script:
#   - the CLI boundary tests (tests/test_cli_boundary.py, TLSSNIFF_SCRIPTS);
#   - `tlssniff live lo` on a real handshake (root: openssl s_server and s_client on port 21090),
#     `tlssniff report` of what it wrote, with charts, and `tlssniff verify`.
# Usage: bash scripts/check-install.sh [WORKDIR]   (default: a new temporary folder)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d "${TMPDIR:-/tmp}/tlssniff-install.XXXXXX")}"
py="${PYTHON:-python3}"
oldest="$(sed -n 's/.*"typer>=\([0-9.]*\)[,"].*/\1/p' "$repo/pyproject.toml")"
port=21090

install() {  # install VENV [PIP ARGS...]
    local venv="$1"; shift
    rm -rf "$venv"
    "$py" -m venv "$venv"
    TLSSNIFF_PURE=1 "$venv/bin/pip" install --quiet --disable-pip-version-check "$repo" "$@"
    "$venv/bin/pip" install --quiet --disable-pip-version-check pytest
    echo "install: $venv: $("$venv/bin/pip" list 2>/dev/null | grep -iE '^(typer|click|rich|matplotlib) ' | tr -s ' ' | tr '\n' ';')"
}

run_live() {  # run_live VENV: a handshake captured live, then report and verify on it
    local venv="$1" out="$work/$(basename "$1")-live"
    rm -rf "$out"; mkdir -p "$out"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=tlssniff.test \
        -keyout "$out/key.pem" -out "$out/cert.pem" -days 2 2>/dev/null
    openssl s_server -accept "$port" -cert "$out/cert.pem" -key "$out/key.pem" -tls1_2 -quiet \
        -naccept 2 >/dev/null 2>&1 &
    local server=$!
    "$venv/bin/tlssniff" live lo --filter "tcp port $port" -f jsonl -o "$out/live.jsonl" \
        --write "$out/live.pcapng" 2>"$out/live.err" &
    local live=$!
    for _ in $(seq 100); do grep -q "listening on" "$out/live.err" && break; sleep 0.1; done
    openssl s_client -connect "127.0.0.1:$port" -servername tlssniff.test -tls1_2 \
        -sess_out "$out/sess.pem" </dev/null >/dev/null 2>&1
    openssl s_client -connect "127.0.0.1:$port" -servername tlssniff.test -tls1_2 \
        -sess_in "$out/sess.pem" </dev/null >/dev/null 2>&1
    sleep 0.5; kill -TERM "$live"; wait "$live"
    wait "$server" || true
    grep -c '"handshake":"full"' "$out/live.jsonl" | grep -qx 1
    grep -c '"handshake":"ticket"' "$out/live.jsonl" | grep -qx 1
    "$venv/bin/tlssniff" report "$out/live.pcapng" -o "$out/bundle" -q
    grep -q "<div class='chart'>" "$out/bundle/report.html"
    ! grep -q "matplotlib is missing" "$out/bundle/report.html"
    "$venv/bin/tlssniff" verify "$out/live.pcapng"
    echo "install: $venv: live lo, report with charts, verify: ok"
}

install "$work/latest"
install "$work/oldest" "typer==$oldest"
scripts="$work/latest/bin/tlssniff $work/oldest/bin/tlssniff"
( cd "$repo" && TLSSNIFF_SCRIPTS="$scripts" "$work/latest/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_cli_boundary.py -k "not ctrl_c and not internal_error" )
if [ "$(id -u)" = 0 ]; then
    run_live "$work/latest"
    run_live "$work/oldest"
else
    echo "install: not root: live lo, report and verify not checked" >&2
fi
echo "install: all checks passed ($work)"
