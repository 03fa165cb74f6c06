"""Opening the files tlssniff writes: never through a link, private modes, no foreign folders.

Every file tlssniff writes holds captured data (server names, addresses, session ids, the
packets themselves), and tlssniff often runs as root (live capture). So every writer goes
through this module:

* :func:`open_output` (``analyze -o``, ``live -o`` and ``live --write``): the last path
  component is opened with ``O_NOFOLLOW``, so a symbolic link planted where the file is to be
  written is refused instead of followed (as root, that link could point at /etc/shadow). An
  existing file is reused only when it is a plain file with a single link (a hard link to
  someone else's file is refused too) and, when running as root, owned by root; it is then
  truncated. A new file is created ``0600``. ``/dev/null``-like character devices and FIFOs
  given by name are written to as they are.
* :class:`OutputDir` (the report bundle): the directory is created ``0700``; an existing one
  is used only when it is owned by the effective user (or root) and either empty or
  ``force`` is given; it is opened once, and every file is written relative to that
  descriptor into a new ``0600`` temporary file (``O_EXCL``) that is then renamed over its
  name, so a link planted in the directory is replaced, never followed, and a reader never
  sees a half-written file.

Errors are :class:`~tlssniff.errors.UsageError`: one line, exit status 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import stat
from pathlib import Path
from typing import IO, Iterator

from tlssniff.errors import UsageError

FILE_MODE = 0o600
DIR_MODE = 0o700

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _trusted_owner(uid: int) -> bool:
    """Whose files and folders tlssniff writes into: its own, or root's."""
    return uid in (os.geteuid(), 0)


OUTPUT_BUFFER = 1 << 20  # bytes an output file holds before it writes: 117 writes for 117 MB
PIPE_BUFFER = 1 << 16  # for a pipe, whose reader may be waiting for the lines


def buffer_size(fd: int) -> int:
    """The buffer for output to ``fd``: OUTPUT_BUFFER for a regular file, PIPE_BUFFER for
    anything else (a pipe, a socket, a FIFO given to ``-o``)."""
    try:
        return OUTPUT_BUFFER if stat.S_ISREG(os.fstat(fd).st_mode) else PIPE_BUFFER
    except OSError:
        return PIPE_BUFFER


@contextlib.contextmanager
def block_buffered(stream: IO[str]) -> Iterator[IO[str]]:
    """``stream`` (standard output) block-buffered for the block, unless it is a terminal.

    Python makes standard output write through, one write(2) per line, where
    PYTHONUNBUFFERED is set (as container images commonly do), and gives it 8 KB buffers
    otherwise. ``analyze -f jsonl`` writes a line per connection: with PYTHONUNBUFFERED=1
    the 100,000-connection handshake capture (bench/) took 100,000 writes and 9.0 s
    against 7.4 s for the same run with 8 KB buffers. Here the text goes through a 1 MB
    buffer onto a duplicate of the stream's descriptor (the same open file), flushed and
    closed when the block ends; the stream itself stays open. A pipe or socket gets 64 KB,
    so that a reader downstream sees lines as they come, a block at a time. A terminal, or a
    stream with no descriptor, is used as it is."""
    try:
        if stream.isatty():
            yield stream
            return
        fd = os.dup(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        yield stream
        return
    stream.flush()
    text = io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w"), buffer_size(fd)),
                            encoding=stream.encoding, errors=stream.errors, newline="")
    try:
        yield text
    finally:
        text.close()  # flushes (a closed pipe raises here); closes the duplicate only


def open_output(path: str | os.PathLike, mode: str = "w") -> IO:
    """``open(path, mode)`` for an output file (``"w"`` text in UTF-8, or ``"wb"``), without
    following a symbolic link, created 0600, an existing file truncated (see module doc)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_output: mode {mode!r}")
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    except OSError as err:
        if os.path.islink(p):
            raise UsageError(f"{p}: is a symbolic link; tlssniff does not write through links "
                             "(give the file it points to)") from None
        raise UsageError(f"{p}: cannot write: {err.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                raise UsageError(f"{p}: has {st.st_nlink} hard links; tlssniff writes only to "
                                 "a file of its own (remove it first)")
            if os.geteuid() == 0 and st.st_uid != 0:
                raise UsageError(f"{p}: belongs to {_owner(st.st_uid)}; running as root, "
                                 "tlssniff does not overwrite other users' files")
            os.ftruncate(fd, 0)
            if st.st_uid == os.geteuid():
                os.fchmod(fd, FILE_MODE)
        elif not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise UsageError(f"{p}: not a regular file")
    except UsageError:
        os.close(fd)
        raise
    except OSError as err:
        os.close(fd)
        raise UsageError(f"{p}: cannot write: {err.strerror}") from None
    if mode == "wb":
        return os.fdopen(fd, "wb", buffering=buffer_size(fd))
    return os.fdopen(fd, "w", encoding="utf-8", newline="", buffering=buffer_size(fd))


class OutputDir:
    """A directory the bundle is written into, checked and opened once (see module doc).

    ``files``: name -> (size, sha256) of what was written through this object."""

    def __init__(self, path: str | os.PathLike, force: bool = False) -> None:
        self.path = Path(path)
        self.files: dict[str, tuple[int, str]] = {}
        p = os.fspath(path)
        created = False
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            st = None
        except OSError as err:
            raise UsageError(f"{p}: cannot use as the bundle directory: {err.strerror}") from None
        if st is None:
            try:
                parent = os.path.dirname(os.path.abspath(p))
                os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
                os.mkdir(p, DIR_MODE)
                created = True
            except FileExistsError:
                pass  # made by someone else meanwhile: checked below like any existing one
            except OSError as err:
                raise UsageError(f"{p}: cannot create the bundle directory: "
                                 f"{err.strerror}") from None
        try:
            # A directory made here is opened without following a link (nobody swaps it for
            # one meanwhile); one given by the user may be a link to a directory.
            self.fd = os.open(p, os.O_RDONLY | _DIRECTORY | _CLOEXEC
                              | (_NOFOLLOW if created else 0))
        except NotADirectoryError:
            raise UsageError(f"{p}: exists and is not a directory") from None
        except OSError as err:
            raise UsageError(f"{p}: cannot open the bundle directory: {err.strerror}") from None
        try:
            st = os.fstat(self.fd)
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(f"{p}: exists and is not a directory")
            if not _trusted_owner(st.st_uid):
                raise UsageError(f"{p}: belongs to {_owner(st.st_uid)}; tlssniff writes a "
                                 "bundle only into a directory of its own user (or root)")
            if not created:
                entries = os.listdir(self.fd)
                if entries and not force:
                    raise UsageError(f"{p}: not empty ({len(entries)} entries); --force "
                                     "replaces the bundle files in it")
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "OutputDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def open(self, name: str, mode: str = "w") -> Iterator[IO]:
        """Write ``name`` in the directory: a new 0600 temporary file renamed over ``name``
        when the block ends without an error (removed otherwise)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"OutputDir.open: {name!r}")
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC,
                         FILE_MODE, dir_fd=self.fd)
        except OSError as err:
            raise UsageError(f"{self.path / name}: cannot write: {err.strerror}") from None
        raw = os.fdopen(fd, "wb", buffering=0)
        hasher = _Hashing(raw)
        buffered = io.BufferedWriter(hasher, 1 << 16)
        f: IO = buffered if "b" in mode else io.TextIOWrapper(buffered, encoding="utf-8",
                                                               newline="")
        try:
            yield f
            f.flush()
            os.fsync(raw.fileno())
            f.close()
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException as err:
            with contextlib.suppress(OSError, ValueError):
                f.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            if isinstance(err, OSError):
                raise UsageError(f"{self.path / name}: cannot write: {err.strerror}") from None
            raise
        self.files[name] = (hasher.size, hasher.sha256.hexdigest())

    def read_back(self, name: str) -> IO[bytes]:
        """``name``, written through :meth:`open`, open for reading (binary): without
        following a link, and only while it is the regular file of the size written."""
        written = self.files.get(name)
        if written is None:
            raise ValueError(f"OutputDir.read_back: {name!r} was not written here")
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC, dir_fd=self.fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != written[0]:
            os.close(fd)
            raise UsageError(f"{self.path / name}: changed while the bundle was written")
        return os.fdopen(fd, "rb")

    def write_text(self, name: str, text: str) -> None:
        with self.open(name, "w") as f:
            f.write(text)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))


class _Hashing(io.RawIOBase):
    """A binary file that hashes and counts what goes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self.raw.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        if not self.raw.closed:
            self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self.flush()
            self.raw.close()
        super().close()
