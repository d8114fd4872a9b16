"""Binlog files made in memory, event by event, for tests of the code that reads them.

Only what ``workflows/binlog_events.py`` looks at is real (headers, GTID, Gtid_list and
query bodies); row events are opaque bytes of a plausible size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from workflows.binlog_events import (
    FORMAT_DESCRIPTION_EVENT,
    GTID_EVENT,
    GTID_LIST_EVENT,
    HEADER,
    MAGIC,
    QUERY_EVENT,
    ROTATE_EVENT,
    STOP_EVENT,
    XID_EVENT,
)
from workflows.gtids import Gtid

WRITE_ROWS_EVENT = 23
TABLE_MAP_EVENT = 19


@dataclass
class BinlogFile:
    """A binlog being written: ``data`` holds the file's bytes so far."""

    server_id: int = 7
    data: bytearray = field(default_factory=lambda: bytearray(MAGIC))

    def event(self, kind: int, body: bytes, timestamp: int = 1_700_000_000) -> int:
        """Append one event; its start position."""
        start = len(self.data)
        size = HEADER.size + len(body) + 4  # + CRC32 (not checked by the reader)
        self.data += HEADER.pack(timestamp, kind, self.server_id, size, start + size, 0)
        self.data += body + b"\0\0\0\0"
        return start

    def header(self, state: list[Gtid]) -> None:
        """Format_description and Gtid_list, as every file starts."""
        self.event(FORMAT_DESCRIPTION_EVENT, b"\x04\x00" + b"x" * 80)
        body = struct.pack("<I", len(state)) + b"".join(
            struct.pack("<IIQ", g.domain, g.server, g.seq) for g in state)
        self.event(GTID_LIST_EVENT, body)

    def transaction(self, seq: int, timestamp: int = 1_700_000_000, domain: int = 0,
                    *, commit: str | None = None) -> tuple[int, int]:
        """GTID, table map, rows, XID (or a ``commit`` query); (start, end)."""
        start = self.event(GTID_EVENT, struct.pack("<QIB", seq, domain, 0), timestamp)
        self.event(TABLE_MAP_EVENT, b"t" * 30, timestamp)
        self.event(WRITE_ROWS_EVENT, b"r" * 40, timestamp)
        if commit is None:
            self.event(XID_EVENT, b"\x01" * 8, timestamp)
        else:
            self.event(QUERY_EVENT, query_body(commit), timestamp)
        return start, len(self.data)

    def ddl(self, seq: int, statement: str, timestamp: int = 1_700_000_000) -> None:
        self.event(GTID_EVENT, struct.pack("<QIB", seq, 0, 1), timestamp)  # standalone
        self.event(QUERY_EVENT, query_body(statement), timestamp)

    def rotate(self, following: str) -> None:
        self.event(ROTATE_EVENT, struct.pack("<Q", 4) + following.encode())

    def stop(self) -> None:
        self.event(STOP_EVENT, b"")


def query_body(statement: str, db: str = "a") -> bytes:
    status = b"\x00" * 5
    return (struct.pack("<IIBHH", 1, 0, len(db), 0, len(status)) + status + db.encode() + b"\0"
            + statement.encode())
