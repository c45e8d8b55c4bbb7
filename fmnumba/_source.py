"""Opening data files for the readers: regular files, pipes, FIFOs and
devices; plain text, gzip/bz2/xz-compressed, or starting with a UTF-8
byte-order mark (skipped).

A regular uncompressed file is read by path, so the parsers stream it.
Anything else (a pipe such as ``<(cat f)``, a FIFO, a device, a compressed
file) is read once into memory, up to :func:`max_stream_bytes`, so that
format detection and parsing see the same bytes and no row is lost. Binary
content (NUL bytes, a zip archive) is refused before any parsing.
"""
import bz2
import errno
import gzip
import io
import lzma
import os
import select
import stat
import zlib

BOM = b"\xef\xbb\xbf"
_PEEK = 1 << 16
_CHUNK = 1 << 20
PIPE_WAIT_S = 10.0  # how long a FIFO without a writer is given for one to connect

_COMPRESSED = {b"\x1f\x8b": ("gzip", lambda raw: gzip.GzipFile(fileobj=raw)),
               b"BZh": ("bz2", bz2.BZ2File),
               b"\xfd7zXZ\x00": ("xz", lzma.LZMAFile)}
_UNSUPPORTED = {b"PK\x03\x04": "a zip archive (an .npz model file?)",
                b"\xff\xfe": "UTF-16 text: convert it to UTF-8",
                b"\xfe\xff": "UTF-16 text: convert it to UTF-8",
                b"\x28\xb5\x2f\xfd": "zstd-compressed", b"\x93NUMPY": "a NumPy .npy file"}


def max_stream_bytes():
    """The most bytes read into memory from a pipe, device or compressed file:
    an eighth of physical memory (4 GiB where it cannot be found)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class Source:
    """A data file opened for reading. `name`: the path as given (for
    messages). Either `path` and `offset` (a regular file, text from that
    byte on) or `data` (the whole text, read into memory)."""

    __slots__ = ("name", "path", "offset", "data")

    def __init__(self, name, path=None, offset=0, data=None):
        self.name, self.path, self.offset, self.data = name, path, offset, data

    def __str__(self):
        return self.name

    def binary(self):
        """A binary file object positioned at the start of the text."""
        if self.data is not None:
            return io.BytesIO(self.data)
        fh = open(self.path, "rb")
        fh.seek(self.offset)
        return fh

    def text(self, newline=None):
        """A UTF-8 text file object over the text (undecodable bytes replaced)."""
        return io.TextIOWrapper(self.binary(), encoding="utf-8", errors="replace",
                                newline=newline)


def _not_text(name, what):
    return ValueError(f"{name}: not a text data file (it is {what}); pass a libsvm, "
                      "libffm or ratings text file (gzip, bz2 and xz files are read too)")


def _check_head(name, head):
    for magic, what in _UNSUPPORTED.items():
        if head.startswith(magic):
            raise _not_text(name, what)
    if b"\0" in head:
        raise _not_text(name, "binary: it holds NUL bytes")


def _read_bounded(fh, name, first=b"", what="a pipe or device", binary=False):
    """All bytes of binary file object fh (after `first`), at most
    max_stream_bytes(), refusing NUL bytes as they arrive unless binary."""
    limit = max_stream_bytes()
    buf = bytearray(first)
    while True:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return bytes(buf)
        if not binary and b"\0" in chunk:
            raise _not_text(name, "binary: it holds NUL bytes")
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"{name}: more than {limit:,} bytes from {what}, the most read "
                             "into memory; write the data to a regular (uncompressed) file "
                             "and pass that")


def _decompress(name, kind, opener, raw):
    """The decompressed text of binary file object raw (bounded)."""
    try:
        with opener(raw) as z:
            data = _read_bounded(z, name, what=f"a {kind} file")
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ValueError(f"{name}: cannot decompress it as {kind} ({e}); the file is "
                         "truncated or corrupt") from None
    _check_head(name, data[:_PEEK])
    return data


def _wait_for_writer(fd, name):
    """First bytes of a FIFO opened non-blocking; waits PIPE_WAIT_S seconds for
    a writer to connect when there is none, then refuses."""
    while True:
        try:
            return os.read(fd, _PEEK)
        except BlockingIOError:  # a writer is connected, no data yet: block from here on
            return b""
        except InterruptedError:
            continue


def _stream_head(fd, name, st):
    if not stat.S_ISFIFO(st.st_mode):
        os.set_blocking(fd, True)
        return b""
    first = _wait_for_writer(fd, name)
    if not first:  # no writer yet (or it wrote nothing): give one time to connect
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(PIPE_WAIT_S * 1000)):
            raise ValueError(f"{name}: no process wrote to this FIFO within {PIPE_WAIT_S:g} s; "
                             "start the writer first, or pass a regular file")
        first = _wait_for_writer(fd, name)
    os.set_blocking(fd, True)
    return first


def open_source(path):
    """The Source for data file `path` (str or os.PathLike; a Source is
    returned as it is). Raises FileNotFoundError, IsADirectoryError, or
    ValueError for binary or undecompressable content."""
    if isinstance(path, Source):
        return path
    if hasattr(path, "read"):
        raise TypeError("expected a file path (str or os.PathLike), got a file object")
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if stat.S_ISSOCK(os.stat(name).st_mode):
        raise _not_text(name, "a socket")
    # non-blocking, so that opening a FIFO without a writer does not hang
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, expected a data file", name)
        if stat.S_ISREG(st.st_mode):
            os.set_blocking(fd, True)
            head = fh.read(_PEEK)
            streamed = False
        else:
            head = _stream_head(fd, name, st)
            while len(head) < 8:  # enough to recognise a compressed stream
                more = fh.read(8 - len(head))
                if not more:
                    break
                head += more
            streamed = True
        for magic, (kind, opener) in _COMPRESSED.items():
            if head.startswith(magic):
                raw = io.BytesIO(_read_bounded(fh, name, head, binary=True)) if streamed else fh
                if not streamed:
                    fh.seek(0)
                data = _decompress(name, kind, opener, raw)
                return Source(name, data=data[len(BOM):] if data.startswith(BOM) else data)
        _check_head(name, head)
        skip = len(BOM) if head.startswith(BOM) else 0
        if not streamed:
            return Source(name, path=name, offset=skip)
        data = _read_bounded(fh, name, head)
        return Source(name, data=data[skip:])
