"""JA4 (tlssniff/tls/ja4.py) against FoxIO's published examples, the specification's edge
rules, and tshark's independent dissection of the shipped captures' ClientHellos."""

from __future__ import annotations

import shutil
import subprocess
from hashlib import sha256

import pytest

from tests.conftest import CAPTURES, analyze_jsonl
from tlssniff.tls.ja4 import alpn_chars, ja4, ja4_base, ja4_raw
from tlssniff.tls.messages import ClientHello

# FoxIO technical_details/JA4.md, "Example": a Chrome ClientHello (plus GREASE the spec says
# to ignore) and its fingerprint.
SPEC_CIPHERS = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
                0xC014, 0x009C, 0x009D, 0x002F, 0x0035)
SPEC_EXTS = (0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023,
             0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015)
SPEC_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def _hello(ciphers=SPEC_CIPHERS, exts=SPEC_EXTS, sigalgs=SPEC_SIGALGS, alpn=b"h2",
           versions=(0x0304, 0x0303), legacy=0x0303) -> ClientHello:
    return ClientHello(
        legacy_version=legacy, session_id=b"", cipher_suites=(0x0A0A,) + ciphers,
        extension_types=(0x1A1A,) + exts + (0xFAFA,), sni="example.com" if 0 in exts else None,
        alpn=(alpn.decode("latin-1"),) if alpn else (), supported_versions=versions,
        signature_algorithms=(0x2A2A,) + sigalgs if sigalgs else (), alpn_first=alpn,
    )


def test_spec_hash_vectors():
    ciphers = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    assert sha256(ciphers.encode()).hexdigest()[:12] == "8daaf6152771"
    exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"
    assert sha256(exts.encode()).hexdigest()[:12] == "6d807ffa2a79"


def test_spec_example():
    ch = _hello()
    assert ja4(ch) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4_raw(ch) == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )


def test_published_browser_fingerprint():
    """A later Chrome (ECH, ALPS 0x44cd) as a public fingerprinting service reported it, raw
    and hashed (order of extensions as on the wire; JA4 sorts them)."""
    exts = (0x002D, 0x0033, 0x0010, 0xFE0D, 0x0017, 0x44CD, 0x0000, 0x000B, 0x000A, 0x002B,
            0xFF01, 0x0023, 0x0012, 0x0005, 0x000D, 0x001B)
    assert ja4(_hello(exts=exts)) == "t13d1516h2_8daaf6152771_d8a2da3f94cd"


def test_no_signature_algorithms_no_underscore():
    ch = _hello(exts=tuple(e for e in SPEC_EXTS if e != 0x000D) + (0x000D,), sigalgs=())
    assert ja4(ch).endswith("_6d807ffa2a79")


def test_version_sni_counts_and_empty_lists():
    assert ja4(_hello(versions=())).startswith("t12d")  # no supported_versions: legacy_version
    assert ja4(_hello(versions=(), legacy=0x0300)).startswith("ts3d")
    assert ja4(_hello(versions=(), legacy=0x9999)).startswith("t00d")
    no_sni = _hello(exts=tuple(e for e in SPEC_EXTS if e != 0))
    assert ja4(no_sni).startswith("t13i1515h2_")
    assert ja4(_hello(), transport="quic").startswith("q13d")
    empty = ClientHello(legacy_version=0x0303, session_id=b"", cipher_suites=(), extension_types=())
    assert ja4(empty) == "t12i000000_000000000000_000000000000"
    many = _hello(ciphers=tuple(range(1, 120)))
    assert ja4(many).startswith("t13d9916")


@pytest.mark.parametrize("raw, want", [
    (b"h2", "h2"), (b"http/1.1", "h1"), (b"x", "xx"), (b"", "00"),
    (b"\xab", "ab"), (b"\xab\xcd", "ad"), (b"0\xab", "3b"), (b"01\xab\xcd", "3d"),
    (b"0\xab\xcd1", "01"),
])
def test_alpn_rule(raw, want):
    assert alpn_chars(raw) == want


def test_base_ignores_resumption_extensions():
    fresh = _hello(exts=tuple(e for e in SPEC_EXTS if e not in (0x0015,)))
    resuming = _hello(exts=SPEC_EXTS + (0x0029,))
    assert ja4(fresh) != ja4(resuming)
    assert ja4_base(fresh) == ja4_base(resuming)


# -- differential: tshark dissects the same hellos independently -------------------------------


def _reference_ja4(ciphers, exts, sigalgs, alpn, versions, legacy) -> str:
    """JA4 from tshark's field values, written straight from the spec text."""
    def grease(x):
        return x & 0x0F0F == 0x0A0A and x >> 8 == x & 0xFF

    ciphers = [c for c in ciphers if not grease(c)]
    exts = [e for e in exts if not grease(e)]
    vs = [v for v in versions if not grease(v)]
    ver = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}.get(max(vs) if vs else legacy, "00")
    a = alpn[0] + alpn[-1] if alpn else "00"
    b = sha256(",".join(sorted(f"{c:04x}" for c in ciphers)).encode()).hexdigest()[:12]
    text = ",".join(sorted(f"{e:04x}" for e in exts if e not in (0, 16)))
    sig = [f"{s:04x}" for s in sigalgs if not grease(s)]
    if sig:
        text += "_" + ",".join(sig)
    c = sha256(text.encode()).hexdigest()[:12]
    sni = "d" if 0 in exts else "i"
    return f"t{ver}{sni}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{a}_{b}_{c}"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", ["openssl-tls13.pcap", "nginx.pcap", "python-ssl.pcapng",
                                  "diagnostics/clients.pcap"])
def test_against_tshark_dissection(name):
    pcap = CAPTURES / name
    ours = {r["client"]: r["ja4"] for r in analyze_jsonl(pcap)}
    ports = {int(r.rsplit(":", 1)[1]) for r in (x["server"] for x in analyze_jsonl(pcap))}
    cmd = ["tshark", "-r", str(pcap), "-n", "-Y", "tls.handshake.type == 1", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for p in ports:
        cmd += ["-d", f"tcp.port=={p},tls"]
    for f in ("ip.src", "ipv6.src", "tcp.srcport", "tls.handshake.ciphersuite",
              "tls.handshake.extension.type", "tls.handshake.sig_hash_alg",
              "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version",
              "tls.handshake.version"):
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    seen = set()
    for line in out.splitlines():
        ip4, ip6, port, ciphers, exts, sigalgs, alpn, versions, legacy = line.split("\t")
        client = f"[{ip6}]:{port}" if ip6 else f"{ip4}:{port}"
        if client in seen:
            continue  # a second ClientHello after a HelloRetryRequest: JA4 is of the first
        seen.add(client)

        def ints(s):
            return [int(x, 0) for x in s.split(",") if x]

        want = _reference_ja4(ints(ciphers), ints(exts), ints(sigalgs), alpn.split(",")[0],
                              ints(versions), int(legacy.split(",")[0], 0))
        assert ours[client] == want, client
    assert seen
