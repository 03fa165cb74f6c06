"""Live capture: libpcap (through scapy's ctypes binding) with the BPF filter in the kernel.

:class:`LiveCapture` opens an interface with libpcap and hands out ``(ts, linktype, frame)``
tuples of raw bytes, exactly what :meth:`tlssniff.analysis.pipeline.Analyzer.feed_frame` takes.
Nothing is dissected by scapy: scapy is only the loader of libpcap (``scapy.libs.winpcapy``,
which finds and binds the library on every platform scapy supports).

Why libpcap's own calls and not scapy's reader classes. Measured on this project's 2-core test
machine with ``python bench/live_load.py --reader-bench``: a burst of 20,000 UDP datagrams of
1,514-byte frames on ``lo``, read after it was sent (so the buffer decides what is kept):

=====================================================  ==========  ===============
reader                                                 per frame   frames kept
=====================================================  ==========  ===============
scapy ``_PcapWrapper_libpcap.next()`` (libpcap)         27.8 µs     652 of 20,000
scapy ``L2ListenSocket.recv_raw`` (AF_PACKET socket)     4.0 µs   3,641 of 20,000
:meth:`LiveCapture.read` (libpcap, this module)          4.0 µs  20,000 of 20,000
=====================================================  ==========  ===============

scapy's ``next()`` copies each frame through a Python list of ints
(``bytes(bytearray(ptr[:caplen]))``) and cannot set the buffer size (``pcap_set_buffer_size``
must come before ``pcap_activate``), so libpcap's 2 MB default ring overflows. A plain AF_PACKET
socket is as fast, but its receive buffer is capped by ``net.core.rmem_max`` (4 MB here). This
module binds libpcap's calls with private ctypes prototypes taking plain pointers, asks for a
64 MB TPACKET_V3 memory-mapped ring, and per frame makes one ``pcap_next_ex`` call (no system
call while the ring has frames), one ``struct.unpack`` of the header and one ``string_at`` copy.

The handle is non-blocking: :meth:`read` returns what the ring holds now and :meth:`wait`
sleeps in ``select`` on libpcap's selectable descriptor for a bounded time, so the caller's loop
sees its stop flag (SIGINT/SIGTERM) and refreshes its dashboard whatever the traffic. A blocking
``pcap_next_ex`` would sit in ``poll`` inside C, where Python cannot run a signal handler.

Kernel counts come from ``pcap_stats`` (``PACKET_STATISTICS`` underneath, accumulated by libpcap):
``received`` counts every frame that passed the filter, those dropped included; ``dropped``
those the ring had no room for.
"""

from __future__ import annotations

import ctypes
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
DEFAULT_FILTER = "tcp"
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


def _libpcap() -> ctypes.CDLL:
    """libpcap as scapy finds it, with private prototypes for the calls used here.

    A separate :class:`ctypes.CDLL` object on the same library: scapy's own function objects
    (and their argtypes) stay untouched.
    """
    try:
        from scapy.libs import winpcapy
    except (ImportError, OSError) as err:  # scapy missing, or it found no libpcap
        raise LiveCaptureError(
            f"live capture needs scapy and libpcap (pip install 'tlssniff[live]', "
            f"apt install libpcap0.8): {err}"
        ) from None
    lib = ctypes.CDLL(winpcapy._lib._name)
    vp, i, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    for name, restype, argtypes in (
        ("pcap_create", vp, [cp, cp]),
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


class LiveCapture:
    """One libpcap handle on ``iface``; use :meth:`open` (or ``with``), then :meth:`read`."""

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

    def open(self) -> LiveCapture:
        if self.iface not in interface_names():
            raise LiveCaptureError(
                f"no such interface: {self.iface!r} (interfaces: {', '.join(interface_names())})"
            )
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
            import sys

            python = os.path.realpath(sys.executable)
            return LiveCaptureError(
                f"no permission to capture on {self.iface} ({detail}): "
                + _HOW_TO_FIX_PERMS.format(python=python)
            )
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
        if lib.pcap_compile(p, ctypes.byref(prog), bpf.encode(), 1, 0xFFFFFFFF) < 0:
            raise LiveCaptureError(f"invalid filter {bpf!r}: {self._geterr()}")
        try:
            if lib.pcap_setfilter(p, ctypes.byref(prog)) < 0:
                raise LiveCaptureError(f"cannot set filter {bpf!r}: {self._geterr()}")
        finally:
            lib.pcap_freecode(ctypes.byref(prog))

    def __enter__(self) -> LiveCapture:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def read(self, limit: int = 4096) -> list[tuple[float, int, bytes]]:
        """The frames the ring holds now (at most ``limit``), oldest first; ``[]`` when none.

        The hot path: one ``pcap_next_ex`` and two ``string_at`` per frame, ~4 µs."""
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
