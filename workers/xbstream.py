"""Reading the xbstream (mbstream) format as it streams past, without unpacking it.

A physical backup arrives as one xbstream: a sequence of chunks, each naming a file of
the data directory. Nothing marks a stream's end, so a donor that dies between two
chunks leaves a stream that ``mbstream -x`` would unpack without complaint. The scanner
therefore follows the chunk headers while the bytes pass on to compression, keeps the
few small metadata files that say where the copy stands (``xtrabackup_checkpoints``,
``xtrabackup_galera_info``, ...), and at the end says whether the stream stopped on a
chunk boundary after the files mariadb-backup writes last.

Chunk layout (little-endian; ``extra/mariabackup/xbstream_read.cc``)::

    "XBSTCK01" | flags:1 | type:1 ('P' payload, 'E' end of file) | path_len:4 | path
    'P' only:  payload_len:8 | offset:8 | crc32:4 | payload

Percona XtraBackup 8 adds sparse chunks ('S') that MariaDB never writes; on any type
other than 'P' or 'E' the scanner stops following (and says so) instead of guessing.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAGIC = b"XBSTCK01"
#: magic + flags + type + path length.
FIXED_HEADER_BYTES = 14
#: payload length + offset + crc32 of a 'P' chunk.
PAYLOAD_HEADER_BYTES = 20
#: A path longer than this is garbage, not a file name (FN_REFLEN is 512).
MAX_PATH_BYTES = 4096
MAX_HEADER_BYTES = FIXED_HEADER_BYTES + MAX_PATH_BYTES + PAYLOAD_HEADER_BYTES
#: Metadata files kept whole while they pass; larger payloads are cut off here.
KEPT_FILE_MAX_BYTES = 64 * 2**10
#: Files a physical backup writes at its very end: a stream without it is cut short.
CHECKPOINTS = "xtrabackup_checkpoints"
GALERA_INFO = "xtrabackup_galera_info"
DONOR_GALERA_INFO = "donor_galera_info"
BINLOG_INFO = "xtrabackup_binlog_info"
KEPT_FILES = frozenset({CHECKPOINTS, GALERA_INFO, DONOR_GALERA_INFO, BINLOG_INFO})


class StreamFormatError(ValueError):
    """The bytes are not an xbstream (or not one we can follow)."""


@dataclass
class XbstreamScanner:
    """Feed it the stream's bytes in any chunking; read ``files`` and ``complete()``."""

    keep: frozenset[str] = KEPT_FILES
    files: dict[str, bytes] = field(default_factory=dict)   #: kept file → its bytes
    closed: set[str] = field(default_factory=set)           #: files whose 'E' chunk passed
    chunks: int = 0
    stopped: str = ""            #: why the scanner stopped following, if it did
    _buffer: bytearray = field(default_factory=bytearray)
    _skip_bytes: int = 0          #: payload bytes still to pass
    _keep_path: str | None = None  #: the kept file the current payload belongs to

    def feed(self, data: bytes) -> None:
        view, pos = memoryview(data), 0
        while pos < len(view) and not self.stopped:
            if self._skip_bytes:
                take = min(self._skip_bytes, len(view) - pos)
                self._keep(view[pos:pos + take])
                self._skip_bytes -= take
                pos += take
            elif self._buffer:  # a header split across two feeds: complete it
                before = len(self._buffer)
                self._buffer += view[pos:pos + MAX_HEADER_BYTES]
                used = self._parse_header(memoryview(self._buffer))
                pos += (used - before) if used else len(self._buffer) - before
                if used:
                    self._buffer.clear()
            elif used := self._parse_header(view[pos:]):
                pos += used
            else:
                self._buffer += view[pos:]
                pos = len(view)

    def _keep(self, payload: memoryview) -> None:
        if self._keep_path is not None:
            kept = self.files.get(self._keep_path, b"")
            room = max(0, KEPT_FILE_MAX_BYTES - len(kept))
            self.files[self._keep_path] = kept + bytes(payload[:room])

    def _parse_header(self, buf: memoryview) -> int:
        """Read the chunk header at the start of ``buf``; its length, or 0 if incomplete."""
        if len(buf) < FIXED_HEADER_BYTES:
            return 0
        if bytes(buf[:8]) != MAGIC:
            raise StreamFormatError(f"no chunk magic after chunk {self.chunks}")
        kind = chr(buf[9])
        path_len = int(struct.unpack_from("<I", buf, 10)[0])
        if path_len > MAX_PATH_BYTES:
            raise StreamFormatError(f"chunk {self.chunks + 1} has a {path_len}-byte path")
        if kind not in "PE":
            self.stopped = f"chunk type {kind!r} is not followed (MariaDB never writes it)"
            log.warning("xbstream: %s; the stream's completeness is not checked", self.stopped)
            return len(buf)
        header = FIXED_HEADER_BYTES + path_len + (PAYLOAD_HEADER_BYTES if kind == "P" else 0)
        if len(buf) < header:
            return 0
        path = bytes(buf[FIXED_HEADER_BYTES:FIXED_HEADER_BYTES + path_len]).decode(
            "utf-8", "replace")
        self.chunks += 1
        if kind == "E":
            self.closed.add(path)
        else:
            self._skip_bytes = int(struct.unpack_from("<Q", buf, header - PAYLOAD_HEADER_BYTES)[0])
            self._keep_path = path if path in self.keep else None
        return header

    @property
    def at_boundary(self) -> bool:
        """Whether the bytes so far end exactly between two chunks."""
        return not self._skip_bytes and not self._buffer

    def complete(self, required: Iterable[str] = (CHECKPOINTS,)) -> str | None:
        """None if the stream ended cleanly with every ``required`` file; else why not."""
        if self.stopped:
            return None  # not followed to the end: nothing to say either way
        if not self.at_boundary:
            return f"it ends inside chunk {self.chunks + 1}"
        missing = [name for name in required if name not in self.closed]
        if missing:
            return f"it ends after {self.chunks} chunks without {', '.join(missing)}"
        return None

    def text(self, name: str) -> str | None:
        data = self.files.get(name)
        return None if data is None else data.decode("utf-8", "replace")


def scanned(chunks: Iterable[bytes], scanner: XbstreamScanner) -> Iterator[bytes]:
    """Pass ``chunks`` through unchanged, feeding each to ``scanner`` on the way."""
    for chunk in chunks:
        scanner.feed(chunk)
        yield chunk


def galera_state(text: str) -> tuple[str, int] | None:
    """``("uuid", seqno)`` from a galera info file (``uuid:seqno [domain]``)."""
    first = text.strip().split()
    if not first or ":" not in first[0]:
        return None
    uuid, _, seqno = first[0].rpartition(":")
    try:
        return uuid, int(seqno)
    except ValueError:
        return None


def backup_lsn(text: str) -> int | None:
    """The LSN the copied redo log reaches (``last_lsn``, else ``to_lsn``), from
    ``xtrabackup_checkpoints``."""
    values = dict(line.replace(" ", "").partition("=")[::2] for line in text.splitlines())
    for key in ("last_lsn", "to_lsn"):
        if values.get(key, "").isdigit():
            return int(values[key])
    return None
