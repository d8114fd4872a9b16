"""The binlog coordinates of a dump's snapshot, read from the dump as it passes.

``mariadb-dump --master-data=2 --gtid`` writes them as comments: the file and position
in its first couple of KiB, the GTID state about a KiB before its end (after all the
data). Keeping the first and the last bytes of the stream is therefore enough; the
dump is neither buffered nor read twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from workflows.gtids import Coordinates, dump_coordinates

#: Bytes kept from the start of a dump: the CHANGE MASTER comment is within its first ~2 KiB.
HEAD_BYTES = 64 * 2**10
#: Bytes kept from the end: the gtid_slave_pos comment is ~1 KiB before it.
TAIL_BYTES = 16 * 2**10


class CoordinateScan:
    """Pass a dump's chunks through with ``passing``; then ``coordinates()``."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = b""

    def passing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if len(self._head) < HEAD_BYTES:
                self._head += chunk[:HEAD_BYTES - len(self._head)]
            self._tail = (self._tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
            yield chunk

    def coordinates(self) -> Coordinates | None:
        """What the dump stated (None if it stated nothing)."""
        return dump_coordinates(bytes(self._head), self._tail)
