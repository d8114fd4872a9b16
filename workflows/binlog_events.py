"""MariaDB binlog events, read from bytes: where each transaction starts and ends, its
GTID and its time. Nothing else of an event is decoded.

A binlog file is 4 magic bytes and events, each with a 19-byte header::

    timestamp u32 | type u8 | server_id u32 | event_size u32 | log_pos u32 | flags u16

``log_pos`` is the position in the file just after the event, so an event's own start
is ``log_pos - event_size`` wherever its bytes come from: ``mariadb-binlog --raw
--start-position=P`` writes the magic, the file's Format_description event (sent again,
with ``log_pos`` 0) and then the events from P on. That is how a fetched piece is put
back in its place in the file, and how the archive proves two pieces touch.

A transaction (a *group*) starts with a GTID event and ends with its XID event, or a
``COMMIT``/``ROLLBACK`` query; a DDL statement's group (GTID flagged standalone) ends
with its query. Between groups sit the file's own events (Format_description,
Gtid_list, Binlog_checkpoint, Rotate, Stop). A piece of a binlog is cut only between
groups, so that each archived segment holds whole transactions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from workflows.gtids import Gtid

MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
HEADER_BYTES = HEADER.size  # 19

STOP_EVENT = 3
QUERY_EVENT = 2
ROTATE_EVENT = 4
FORMAT_DESCRIPTION_EVENT = 15
XID_EVENT = 16
GTID_EVENT = 162
GTID_LIST_EVENT = 163
#: A GTID event's flag: the group is one statement (DDL), ended by its query event.
FL_STANDALONE = 1
#: Bytes of a query event's fixed part: thread id, exec time, db length, error code,
#: status variables length.
QUERY_POST_HEADER = struct.Struct("<IIBHH")
GROUP_END_QUERIES = (b"COMMIT", b"ROLLBACK", b"XA COMMIT", b"XA ROLLBACK")


@dataclass(frozen=True)
class Event:
    start: int        #: position in the binlog file
    end: int          #: position after it (its ``log_pos``)
    type: int
    timestamp: int    #: unix seconds
    server_id: int
    offset: int       #: where its bytes are in the data it was read from
    size: int         #: bytes, header and checksum included


@dataclass(frozen=True, slots=True)
class Group:
    """One transaction, as it stands in the binlog file."""

    gtid: Gtid
    start: int
    end: int
    timestamp: int    #: of its GTID event: the commit's, to the second


@dataclass
class Piece:
    """What a fetched piece of one binlog file holds (no event is kept: a piece may be
    a whole 1 GiB file)."""

    format_event: bytes = b""           #: the Format_description event's bytes
    groups: list[Group] = field(default_factory=list)  #: whole transactions, in order
    gtid_list: list[Gtid] | None = None  #: the Gtid_list event, if the piece has it
    #: Position after the last event that is not inside a transaction.
    boundary: int | None = None
    closed: bool = False                #: ends with Rotate or Stop: the file is complete
    #: File position minus offset in the fetched bytes, the same for every event after
    #: the Format_description one (None: no such event).
    delta: int | None = None

    def offset(self, position: int) -> int:
        """Where file position ``position`` is in the fetched bytes."""
        assert self.delta is not None
        return position - self.delta


def events(chunks: Iterable[bytes]) -> Iterator[tuple[Event, bytes]]:
    """Every whole event of a raw binlog (magic first) given in chunks of any size, with
    its bytes; a torn last event is left out. Memory: one chunk and one event."""
    buf, pos, offset, magic = bytearray(), 0, 0, False
    for chunk in chunks:
        buf += chunk
        if not magic:
            if len(buf) < len(MAGIC):
                continue
            if not buf.startswith(MAGIC):
                raise ValueError("not a binlog: the magic bytes are missing")
            magic, pos, offset = True, len(MAGIC), len(MAGIC)
        while pos + HEADER_BYTES <= len(buf):
            timestamp, kind, server_id, size, log_pos, _ = HEADER.unpack_from(buf, pos)
            if size < HEADER_BYTES:
                raise ValueError(f"binlog event at offset {offset} claims {size} bytes")
            if pos + size > len(buf):
                break
            start = log_pos - size if log_pos else 0
            yield (Event(start, log_pos, kind, timestamp, server_id, offset, size),
                   bytes(buf[pos:pos + size]))
            pos, offset = pos + size, offset + size
        del buf[:pos]
        pos = 0


class Transactions:
    """Follows events into transactions: ``add`` says which event starts one (its
    GTID) and which ends one."""

    def __init__(self) -> None:
        self.open: tuple[Gtid, Event, bool] | None = None

    def add(self, event: Event, body: bytes) -> tuple[Gtid | None, Group | None]:
        """The GTID of the transaction ``event`` starts, the transaction it ends."""
        if event.type == GTID_EVENT:
            gtid = gtid_of(body, event.server_id)
            self.open = (gtid, event, bool(body[12] & FL_STANDALONE))
            return gtid, None
        if self.open is None:
            return None, None
        gtid, first, standalone = self.open
        if not _ends_group(event, body, standalone=standalone):
            return None, None
        self.open = None
        return None, Group(gtid, first.start, event.end, first.timestamp)


class PieceReader:
    """Reads a fetched piece into a ``Piece``: feed it each event."""

    def __init__(self, since: int) -> None:
        self.since, self.piece = since, Piece()
        self._transactions = Transactions()

    def add(self, event: Event, data: bytes) -> None:
        piece, body = self.piece, data[HEADER_BYTES:]
        if event.type == FORMAT_DESCRIPTION_EVENT:
            piece.format_event = data
            return
        if event.end == 0 or event.start < self.since:
            return
        delta = event.start - event.offset
        if piece.delta is None:
            piece.delta = delta
        elif delta != piece.delta:
            raise ValueError(f"binlog event at {event.start} is out of place in the fetched "
                             f"bytes (offset {event.offset})")
        if event.type == GTID_LIST_EVENT:
            piece.gtid_list = gtid_list(body)
        inside = self._transactions.open is not None
        started, group = self._transactions.add(event, body)
        if group is not None:
            piece.groups.append(group)
            piece.boundary = event.end
        elif started is None and not inside:
            piece.boundary = event.end
            piece.closed = event.type in (ROTATE_EVENT, STOP_EVENT)


def read_piece(chunks: Iterable[bytes], since: int) -> Piece:
    """The events of a raw binlog (or a piece of one) from file position ``since`` on,
    grouped into transactions."""
    reader = PieceReader(since)
    for event, data in events(chunks):
        reader.add(event, data)
    return reader.piece


def _ends_group(event: Event, body: bytes, *, standalone: bool) -> bool:
    if event.type == XID_EVENT:
        return True
    if event.type != QUERY_EVENT:
        return False
    return standalone or query_text(body).startswith(GROUP_END_QUERIES)


def gtid_of(body: bytes, server_id: int) -> Gtid:
    """A GTID event's GTID: sequence u64, domain u32 (the server id is the header's)."""
    seq, domain = struct.unpack_from("<QI", body, 0)
    return Gtid(domain, server_id, seq)


def gtid_list(body: bytes) -> list[Gtid]:
    """A Gtid_list event's GTIDs: count (low 28 bits), then domain u32, server u32, seq u64."""
    (count,) = struct.unpack_from("<I", body, 0)
    count &= (1 << 28) - 1
    return [Gtid(*struct.unpack_from("<IIQ", body, 4 + 16 * i)) for i in range(count)]


def query_text(body: bytes) -> bytes:
    """The statement of a query event (and whatever trails it: a checksum)."""
    _, _, db_len, _, status_len = QUERY_POST_HEADER.unpack_from(body, 0)
    return body[QUERY_POST_HEADER.size + status_len + db_len + 1:]
