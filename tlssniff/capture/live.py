"""Live capture: raw frames from an interface, the BPF filter in the kernel, no dissection.

:class:`LiveCapture` hands out ``(ts, linktype, frame)`` tuples of raw bytes, exactly what
:meth:`tlssniff.engine.pipeline.Analyzer.feed_frame` takes. libpcap is loaded with ctypes
(``ctypes.util.find_library("pcap")``, else its usual sonames); it is the only system requirement.
Two readers, chosen by ``backend="auto"``:

* ``ring`` (Ethernet and loopback interfaces: eth*, veth, bridges, bonds, lo): an AF_PACKET
  socket with a TPACKET_V3 ring mapped into the process and walked in Python, the filter
  compiled by libpcap (``pcap_compile`` on ``pcap_open_dead``, i.e. ``tcpdump -ddd``) and
  attached with ``SO_ATTACH_FILTER`` before the socket is bound;
* ``pcap`` (everything else: ``any``, tunnels, PPP, and filters using ``vlan``): libpcap's own
  live handle, ``pcap_next_ex`` per frame through private ctypes prototypes taking plain
  pointers, the header read with one ``struct.unpack`` of ``string_at``.

Why, measured on the project's 2-core machine (shared with other jobs, so figures vary ±20 %).
``python bench/live_load.py --reader-bench``: a burst of 20,000 UDP datagrams in 1,514-byte frames
on ``lo``, read after it was sent, so the buffer decides what is kept (per frame kept; on ``lo``
each packet is seen twice, outgoing and incoming, and the outgoing copy is skipped):

==============================================  =========  ===============
reader                                          per frame  frames kept
==============================================  =========  ===============
scapy ``open_pcap().next()`` (libpcap)           28-34 µs     652 of 20,000
scapy ``L2ListenSocket.recv_raw`` (AF_PACKET)     4.0-5.1 µs 3,641 of 20,000
``pcap`` backend (libpcap ``pcap_next_ex``)      3.6-4.0 µs  20,000 of 20,000
``ring`` backend (TPACKET_V3 walked in Python)       2.2 µs  20,000 of 20,000
==============================================  =========  ===============

scapy's ``next()`` copies each frame through a Python list of ints and cannot set the buffer
size (``pcap_set_buffer_size`` must come before ``pcap_activate``), so libpcap's 2 MB default
overflows; ``L2ListenSocket`` is one ``recvfrom`` per frame into a socket buffer capped by
``net.core.rmem_max`` (4 MB here). Under the issue's load (``bench/live_load.py``: 326
handshakes/s plus 55 MB/s over a veth, 45,800 frames/s, other jobs running beside it) the
``pcap`` backend used 26 % of a core and the kernel dropped 3,839 frames in 60 s when the
machine got busy; the ``ring`` backend used 17 % of a core and dropped none.

Both are non-blocking: :meth:`LiveCapture.read` returns what the ring holds now, and
:meth:`LiveCapture.wait` sleeps in ``select`` for a bounded time, so the caller's loop sees its
stop flag (SIGINT/SIGTERM) and redraws its dashboard whatever the traffic. (A blocking
``pcap_next_ex`` sits in ``poll`` inside C, where Python cannot run a signal handler.) The kernel
hands a ring block over when it is full or after :data:`BLOCK_TIMEOUT_MS`.

Kernel counts (``PACKET_STATISTICS``, through ``pcap_stats`` for libpcap): ``received`` counts
every frame that passed the filter, the dropped ones included (on ``lo``, both copies of each
packet); ``dropped`` the frames the ring had no room for.
"""

from __future__ import annotations

import ctypes
import functools
import grp
import os
import pwd
import select
import socket
import struct
import time
from dataclasses import dataclass

from tlssniff.errors import UsageError

__all__ = [
    "DEFAULT_BUFFER_MB",
    "DEFAULT_FILTER",
    "DEFAULT_SNAPLEN",
    "KernelStats",
    "LiveCapture",
    "LiveCaptureError",
    "drop_privileges",
    "interface_names",
]

#: TCP only; UDP 443 (QUIC) is added by a later change.
# TCP for TLS (STARTTLS included), UDP 443 for QUIC (HTTP/3); DTLS on other ports needs --filter.
DEFAULT_FILTER = "tcp or udp port 443"
#: Like tcpdump: whole frames (a handshake frame cut short would be a gap).
DEFAULT_SNAPLEN = 262144
#: Kernel ring size. 64 MB holds more than a second of a saturated gigabit link's frames, so a
#: pause of the Python loop (a garbage collection, a dashboard refresh) costs no drop.
DEFAULT_BUFFER_MB = 64
#: How long the kernel may hold a partly filled ring block before handing it over (ms).
BLOCK_TIMEOUT_MS = 100

# pcap_activate() results (pcap/pcap.h)
_PCAP_WARNING_PROMISC_NOTSUP = 2
_PCAP_ERROR_NO_SUCH_DEVICE = -5
_PCAP_ERROR_PERM_DENIED = -8
_PCAP_ERROR_IFACE_NOT_UP = -9
_PCAP_ERROR_PROMISC_PERM_DENIED = -11

_HOW_TO_FIX_PERMS = (
    "run as root, or give the python binary the capability: "
    "setcap cap_net_raw,cap_net_admin=eip {python}"
)


class LiveCaptureError(UsageError):
    """The interface cannot be captured: no permission, no such interface, a bad filter."""


@dataclass(slots=True)
class KernelStats:
    received: int = 0  # frames that passed the filter (dropped ones included)
    dropped: int = 0  # frames the kernel ring had no room for
    if_dropped: int = 0  # dropped by the interface/driver, as the OS reports it


def interface_names() -> list[str]:
    """Interfaces that exist, as the kernel names them (plus libpcap's ``any``)."""
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
    return names + ["any"]


class _PcapStat(ctypes.Structure):
    _fields_ = [("ps_recv", ctypes.c_uint), ("ps_drop", ctypes.c_uint), ("ps_ifdrop", ctypes.c_uint)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


_LIBPCAP_NAMES = ("libpcap.so.1", "libpcap.so.0.8", "libpcap.so", "libpcap.dylib")


def _find_libpcap() -> ctypes.CDLL:
    """libpcap, loaded with ctypes: ``ctypes.util.find_library("pcap")``, else its usual names."""
    import ctypes.util

    names = [n for n in (ctypes.util.find_library("pcap"),) if n] + list(_LIBPCAP_NAMES)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise LiveCaptureError(
        "live capture needs libpcap, which is not installed "
        "(Debian/Ubuntu: apt-get install libpcap0.8; Fedora: dnf install libpcap)"
    )


@functools.cache
def _libpcap() -> ctypes.CDLL:
    """libpcap (found by :func:`_find_libpcap`), with the prototypes of the calls used here."""
    lib = _find_libpcap()
    vp, i, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    for name, restype, argtypes in (
        ("pcap_create", vp, [cp, cp]),
        ("pcap_open_dead", vp, [i, i]),
        ("pcap_set_snaplen", i, [vp, i]),
        ("pcap_set_promisc", i, [vp, i]),
        ("pcap_set_timeout", i, [vp, i]),
        ("pcap_set_buffer_size", i, [vp, i]),
        ("pcap_activate", i, [vp]),
        ("pcap_geterr", cp, [vp]),
        ("pcap_statustostr", cp, [i]),
        ("pcap_datalink", i, [vp]),
        ("pcap_compile", i, [vp, vp, cp, i, ctypes.c_uint32]),
        ("pcap_setfilter", i, [vp, vp]),
        ("pcap_freecode", None, [vp]),
        ("pcap_setnonblock", i, [vp, i, cp]),
        ("pcap_get_selectable_fd", i, [vp]),
        ("pcap_next_ex", i, [vp, vp, vp]),
        ("pcap_stats", i, [vp, vp]),
        ("pcap_close", None, [vp]),
    ):
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class _PcapSource:
    """One libpcap handle on ``iface``: the path for interfaces the ring reader does not take
    (``any``, tunnels, PPP: libpcap's cooked mode)."""

    def __init__(
        self,
        iface: str,
        bpf: str = DEFAULT_FILTER,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
        buffer_mb: int = DEFAULT_BUFFER_MB,
    ):
        self.iface = iface
        self.bpf = bpf
        self.snaplen = snaplen
        self.promisc = promisc
        self.buffer_mb = buffer_mb
        self.linktype = -1
        self.warning: str | None = None  # pcap_activate succeeded with a warning
        self._lib: ctypes.CDLL | None = None
        self._p: int | None = None
        self._fd = -1

    # -- opening -----------------------------------------------------------------------------

    def open(self) -> _PcapSource:
        lib = self._lib = _libpcap()
        errbuf = ctypes.create_string_buffer(256)
        p = lib.pcap_create(self.iface.encode(), errbuf)
        if not p:
            raise LiveCaptureError(f"{self.iface}: {errbuf.value.decode(errors='replace')}")
        self._p = p
        try:
            lib.pcap_set_snaplen(p, self.snaplen)
            lib.pcap_set_promisc(p, 1 if self.promisc else 0)
            lib.pcap_set_timeout(p, BLOCK_TIMEOUT_MS)
            lib.pcap_set_buffer_size(p, self.buffer_mb * 1024 * 1024)
            status = lib.pcap_activate(p)
            if status < 0:
                raise self._activate_error(status)
            if status > 0:
                self.warning = f"{self.iface}: {self._status(status)}"
            self.linktype = lib.pcap_datalink(p)
            self._set_filter(self.bpf)
            if lib.pcap_setnonblock(p, 1, errbuf) < 0:
                raise LiveCaptureError(f"{self.iface}: {errbuf.value.decode(errors='replace')}")
            self._fd = lib.pcap_get_selectable_fd(p)
        except BaseException:
            self.close()
            raise
        self._hdr = ctypes.c_void_p()
        self._data = ctypes.c_void_p()
        return self

    def _status(self, status: int) -> str:
        return (self._lib.pcap_statustostr(status) or b"").decode(errors="replace")

    def _geterr(self) -> str:
        return (self._lib.pcap_geterr(self._p) or b"").decode(errors="replace")

    def _activate_error(self, status: int) -> LiveCaptureError:
        detail = self._geterr() or self._status(status)
        if status in (_PCAP_ERROR_PERM_DENIED, _PCAP_ERROR_PROMISC_PERM_DENIED) or (
            "Operation not permitted" in detail
        ):
            return _no_permission(self.iface, detail)
        if status == _PCAP_ERROR_NO_SUCH_DEVICE:
            return LiveCaptureError(
                f"no such interface: {self.iface!r} (interfaces: {', '.join(interface_names())})"
            )
        if status == _PCAP_ERROR_IFACE_NOT_UP:
            return LiveCaptureError(f"interface {self.iface} is down (ip link set {self.iface} up)")
        return LiveCaptureError(f"cannot capture on {self.iface}: {detail}")

    def _set_filter(self, bpf: str) -> None:
        lib, p = self._lib, self._p
        prog = _BpfProgram()
        # netmask 0xffffffff (PCAP_NETMASK_UNKNOWN): only "ip broadcast" needs a real one
        if lib.pcap_compile(p, ctypes.byref(prog), bpf.encode(), 1, _NETMASK_UNKNOWN) < 0:
            raise LiveCaptureError(f"invalid filter {bpf!r}: {self._geterr()}")
        try:
            if lib.pcap_setfilter(p, ctypes.byref(prog)) < 0:
                raise LiveCaptureError(f"cannot set filter {bpf!r}: {self._geterr()}")
        finally:
            lib.pcap_freecode(ctypes.byref(prog))

    # -- reading -----------------------------------------------------------------------------

    def read(self, limit: int = 4096) -> list[tuple[float, int, bytes]]:
        """The frames the ring holds now (at most ``limit``), oldest first; ``[]`` when none.

        One ``pcap_next_ex`` and two ``string_at`` per frame, ~3.6 µs."""
        next_ex = self._lib.pcap_next_ex
        p = self._p
        hdr, data = self._hdr, self._data
        hdr_ref, data_ref = ctypes.byref(hdr), ctypes.byref(data)
        string_at = ctypes.string_at
        unpack = _PKTHDR.unpack
        hdr_size = _PKTHDR.size
        linktype = self.linktype
        out = []
        append = out.append
        while len(out) < limit:
            r = next_ex(p, hdr_ref, data_ref)
            if r != 1:
                if r < 0:
                    raise LiveCaptureError(f"capture on {self.iface} failed: {self._geterr()}")
                break
            sec, usec, caplen, _ = unpack(string_at(hdr.value, hdr_size))
            append((sec + usec * 1e-6, linktype, string_at(data.value, caplen)))
        return out

    def wait(self, timeout: float) -> bool:
        """Sleep until frames may be ready or ``timeout`` seconds pass; False on timeout."""
        if self._fd < 0:
            time.sleep(timeout)
            return True
        try:
            ready, _, _ = select.select([self._fd], [], [], timeout)
        except InterruptedError:  # a signal: the caller checks its stop flag
            return True
        return bool(ready)

    def stats(self) -> KernelStats:
        st = _PcapStat()
        if self._p is None or self._lib.pcap_stats(self._p, ctypes.byref(st)) < 0:
            return KernelStats()
        return KernelStats(st.ps_recv, st.ps_drop, st.ps_ifdrop)

    def close(self) -> None:
        if self._p is not None:
            self._lib.pcap_close(self._p)
            self._p = None
            self._fd = -1


# struct pcap_pkthdr: struct timeval (two C longs), caplen, len
_PKTHDR = struct.Struct("@llII")
_NETMASK_UNKNOWN = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN: only "ip broadcast" needs a real one


def _no_permission(iface: str, detail: str) -> LiveCaptureError:
    import sys

    python = os.path.realpath(sys.executable)
    return LiveCaptureError(
        f"no permission to capture on {iface} ({detail}): " + _HOW_TO_FIX_PERMS.format(python=python)
    )


def compile_filter(bpf: str, linktype: int, snaplen: int) -> bytes:
    """``bpf`` compiled by libpcap for ``linktype``: the ``struct sock_filter`` array the kernel
    takes (what ``tcpdump -ddd`` prints). Raises :class:`LiveCaptureError` when it is invalid."""
    lib = _libpcap()
    p = lib.pcap_open_dead(linktype, snaplen)
    if not p:
        raise LiveCaptureError("libpcap could not compile filters (pcap_open_dead failed)")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(p, ctypes.byref(prog), bpf.encode(), 1, _NETMASK_UNKNOWN) < 0:
            detail = (lib.pcap_geterr(p) or b"").decode(errors="replace")
            raise LiveCaptureError(f"invalid filter {bpf!r}: {detail}")
        n = prog.bf_len
        code = ctypes.string_at(prog.bf_insns, n * 8)
        lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(p)
    return code


# -- the memory-mapped ring (TPACKET_V3) ------------------------------------------------------

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_PROMISC = 1
_PACKET_RX_RING = 5
_PACKET_STATISTICS = 6
_PACKET_VERSION = 10
_PACKET_FANOUT = 18
_PACKET_FANOUT_HASH = 0
_PACKET_FANOUT_FLAG_DEFRAG = 0x8000
_TPACKET_V3 = 2
_SO_ATTACH_FILTER = 26
_PACKET_OUTGOING = 4
_TP_STATUS_USER = 1
_TP_STATUS_VLAN_VALID = 1 << 4
_TP_STATUS_VLAN_TPID_VALID = 1 << 6
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772
_RING_BLOCK = 1 << 20  # 1 MB blocks; a block is handed over full or after BLOCK_TIMEOUT_MS
_TP_FRAME = 2048  # only checked for consistency by the kernel in TPACKET_V3

# struct tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac, net, vlan_tci,
# vlan_tpid; the struct sockaddr_ll follows at TPACKET_ALIGN(48), its sll_pkttype at +10.
_TP3 = struct.Struct("IIIIIIHHIH")
_SLL_PKTTYPE = 48 + 10
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1's block_status,
# num_pkts, offset_to_first_pkt
_BLOCK_OFF = 8
_BLOCK = struct.Struct("III")
_U32 = struct.Struct("I")


def _arphrd(iface: str) -> int | None:
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


class _RingSource:
    """An AF_PACKET socket with a TPACKET_V3 ring mapped into this process, walked in Python.

    For Ethernet and loopback interfaces (link type 1, like libpcap gives them). The filter is
    compiled by libpcap (:func:`compile_filter`) and attached to the socket before it is bound,
    so no frame passes unfiltered. Frames are sliced straight out of the mapped ring: one
    ``struct.unpack_from`` of the frame's header and one slice per frame, no call into C.
    Like libpcap, frames the kernel received with their 802.1Q tag taken off (VLAN offload) get
    the tag put back, and on loopback the outgoing copy of every packet is skipped.
    """

    def __init__(self, iface: str, bpf: str, snaplen: int, promisc: bool, buffer_mb: int,
                 fanout: int | None = None):
        self.iface, self.bpf, self.snaplen = iface, bpf, snaplen
        self.fanout = fanout
        self.promisc, self.buffer_mb = promisc, buffer_mb
        self.linktype = 1
        self.warning: str | None = None
        self._sock: socket.socket | None = None
        self._mm = None
        self._filter = None
        self._stats = KernelStats()

    def open(self) -> _RingSource:
        import mmap

        code = compile_filter(self.bpf, self.linktype, self.snaplen)
        loopback = _arphrd(self.iface) == _ARPHRD_LOOPBACK
        try:
            # Protocol 0: nothing is received until bind(), after the filter is attached.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError as err:
            raise _no_permission(self.iface, f"socket: {err.strerror}") from None
        self._sock = sock
        try:
            self._filter = ctypes.create_string_buffer(code, len(code))
            fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(self._filter))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            sock.setsockopt(_SOL_PACKET, _PACKET_VERSION, _TPACKET_V3)
            blocks = max(8, self.buffer_mb * (1 << 20) // _RING_BLOCK)
            self._nblocks = blocks
            req = struct.pack("IIIIIII", _RING_BLOCK, blocks, _TP_FRAME,
                              _RING_BLOCK // _TP_FRAME * blocks, BLOCK_TIMEOUT_MS, 0, 0)
            sock.setsockopt(_SOL_PACKET, _PACKET_RX_RING, req)
            self._mm = mmap.mmap(sock.fileno(), _RING_BLOCK * blocks, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            sock.bind((self.iface, _ETH_P_ALL))
            if self.fanout is not None:
                # One member of fanout group ``fanout``: the kernel hands each frame to one
                # socket of the group by a symmetric hash of its flow (both directions of a
                # connection to the same socket), IP fragments reassembled first.
                mode = _PACKET_FANOUT_HASH | _PACKET_FANOUT_FLAG_DEFRAG
                sock.setsockopt(_SOL_PACKET, _PACKET_FANOUT,
                                struct.pack("I", (self.fanout & 0xFFFF) | mode << 16))
            if self.promisc:
                ifindex = socket.if_nametoindex(self.iface)
                mreq = struct.pack("iHH8s", ifindex, _PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as err:
            self.close()
            if isinstance(err, PermissionError):
                raise _no_permission(self.iface, err.strerror) from None
            raise LiveCaptureError(f"cannot capture on {self.iface}: {err.strerror or err}") from None
        self._skip_outgoing = loopback
        self._block = 0
        try:
            with open(f"/sys/class/net/{self.iface}/flags") as f:
                if not int(f.read(), 16) & 1:  # IFF_UP
                    self.warning = f"{self.iface}: the interface is down (ip link set {self.iface} up)"
        except (OSError, ValueError):
            pass
        return self

    def read(self, limit: int = 4096) -> list[tuple[float, int, bytes]]:
        """The frames of the ring's ready blocks (whole blocks: ``limit`` is a hint), oldest
        first; ``[]`` when none. The hot path: one ``unpack_from`` and one slice per frame,
        no call into C (2.2 µs per frame kept on ``lo``, where each packet is seen twice)."""
        mm = self._mm
        out: list[tuple[float, int, bytes]] = []
        append = out.append
        unpack_hdr = _TP3.unpack_from
        skip_outgoing = self._skip_outgoing
        nblocks = self._nblocks
        while len(out) < limit:
            base = self._block * _RING_BLOCK
            status, num, first = _BLOCK.unpack_from(mm, base + _BLOCK_OFF)
            if not status & _TP_STATUS_USER:
                break
            p = base + first
            for _ in range(num):
                nxt, sec, nsec, snap, _len, st, mac, _net, tci, tpid = unpack_hdr(mm, p)
                if not (skip_outgoing and mm[p + _SLL_PKTTYPE] == _PACKET_OUTGOING):
                    frame = mm[p + mac:p + mac + snap]
                    if st & _TP_STATUS_VLAN_VALID:
                        tpid = tpid if st & _TP_STATUS_VLAN_TPID_VALID else 0x8100
                        frame = frame[:12] + struct.pack("!HH", tpid, tci & 0xFFFF) + frame[12:]
                    # microseconds, like libpcap and the pcapng the frames may be written to
                    append((sec + nsec // 1000 * 1e-6, 1, frame))
                p += nxt
            _U32.pack_into(mm, base + _BLOCK_OFF, 0)  # TP_STATUS_KERNEL: the block goes back
            self._block = (self._block + 1) % nblocks
        return out

    def wait(self, timeout: float) -> bool:
        try:
            ready, _, _ = select.select([self._sock], [], [], timeout)
        except InterruptedError:
            return True
        return bool(ready)

    def stats(self) -> KernelStats:
        if self._sock is not None:
            # struct tpacket_stats_v3; the kernel resets it on every read, so it is summed here.
            # tp_packets counts the dropped frames too.
            raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 12)
            packets, drops, _ = struct.unpack("III", raw)
            self._stats.received += packets
            self._stats.dropped += drops
        return KernelStats(self._stats.received, self._stats.dropped, 0)

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class LiveCapture:
    """A live capture on ``iface``: :meth:`open` (or ``with``), then :meth:`read` and
    :meth:`wait`; :meth:`stats` gives the kernel's counts.

    ``backend``: ``"ring"`` (Ethernet and loopback interfaces), ``"pcap"`` (anything libpcap
    opens) or ``"auto"`` (the ring where it applies, else libpcap).
    """

    def __init__(
        self,
        iface: str,
        bpf: str = DEFAULT_FILTER,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
        buffer_mb: int = DEFAULT_BUFFER_MB,
        backend: str = "auto",
        fanout: int | None = None,
    ):
        """``fanout``: join PACKET_FANOUT group ``fanout`` (ring backend only; see
        tlssniff/run/workers.py): the kernel splits the frames by flow hash among the
        group's sockets."""
        self.iface = iface
        self.fanout = fanout
        self.bpf = bpf
        self.snaplen = snaplen
        self.promisc = promisc
        self.buffer_mb = buffer_mb
        self.backend = backend
        self.linktype = -1
        self.warning: str | None = None
        self._src = None

    def open(self) -> LiveCapture:
        if self.iface not in interface_names():
            raise LiveCaptureError(
                f"no such interface: {self.iface!r} (interfaces: {', '.join(interface_names())})"
            )
        backend = self.backend
        if backend == "auto":
            # "vlan" filters: libpcap compiles them for a live Linux handle to read the tag the
            # kernel took off (VLAN offload); a filter compiled for the ring would not see it.
            ring_ok = (hasattr(socket, "AF_PACKET")
                       and _arphrd(self.iface) in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK)
                       and "vlan" not in self.bpf)
            backend = "ring" if ring_ok else "pcap"
        if self.fanout is not None and backend != "ring":
            raise LiveCaptureError(f"{self.iface}: several workers need the AF_PACKET ring "
                                   "(an Ethernet or loopback interface, --backend ring)")
        src: _RingSource | _PcapSource
        if backend == "ring":
            src = _RingSource(self.iface, self.bpf, self.snaplen, self.promisc, self.buffer_mb,
                              self.fanout)
        else:
            src = _PcapSource(self.iface, self.bpf, self.snaplen, self.promisc, self.buffer_mb)
        self._src = src.open()
        self.backend = backend
        self.linktype = src.linktype
        self.warning = src.warning
        self.read = src.read
        self.wait = src.wait
        self.stats = src.stats
        return self

    def read(self, limit: int = 4096) -> list[tuple[float, int, bytes]]:
        """The frames ready now (about ``limit`` at most), oldest first; ``[]`` when none."""
        raise LiveCaptureError("the capture is not open")

    def wait(self, timeout: float) -> bool:
        """Sleep until frames may be ready or ``timeout`` seconds pass; False on timeout."""
        raise LiveCaptureError("the capture is not open")

    def stats(self) -> KernelStats:
        return KernelStats()

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None

    def __enter__(self) -> LiveCapture:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def drop_privileges(user: str) -> str | None:
    """Become ``user`` (its primary group, no supplementary groups), like ``tcpdump -Z``.

    Returns a note of what was done, None when not running as root (nothing to drop). Raises
    :class:`LiveCaptureError` for an unknown user or when the change does not stick."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise LiveCaptureError(f"--user {user}: no such user") from None
    try:
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except OSError as err:
        raise LiveCaptureError(f"cannot drop privileges to {user}: {err.strerror}") from None
    try:
        os.setuid(0)
    except OSError:
        pass
    else:
        raise LiveCaptureError(f"dropping privileges to {user} did not stick")
    try:
        group = grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        group = str(pw.pw_gid)
    return f"running as {user}:{group}"
