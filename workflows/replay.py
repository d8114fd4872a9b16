"""What of the archive a restore to a point replays, decided event by event.

The restored snapshot holds every transaction up to its GTID state; the archived
segments from there are streamed through this filter into ``mariadb-binlog``. It
passes each segment's Format_description event (the decoder needs it), skips the
files' own events and every transaction the snapshot (or an earlier segment) already
holds, and stops before the first transaction past the point (``workflows/recovery.py``
says what a point means). Two checks make a silent skip impossible (MOCO #563): a
transaction whose GTID does not follow the last one replayed fails the restore, and
``ended_at_point`` says whether the replay stopped exactly at the point: at the point's
GTID or position, or for a time, at the first transaction stamped past it or else at
the planned end of the archive (``end_state``) — never short of either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from workflows.binlog_events import (
    FORMAT_DESCRIPTION_EVENT,
    HEADER_BYTES,
    MAGIC,
    Event,
    Transactions,
)
from workflows.errors import IntegrityError
from workflows.gtids import Gtid, advance, contains, format_state, missing_between, parse_state
from workflows.recovery import Point


@dataclass
class ReplayFilter:
    start_state: str
    point: Point
    #: GTID state after the planned segments ("": not known, not checked)
    end_state: str = ""
    state: dict[int, Gtid] = field(default_factory=dict)
    transactions: int = 0
    last: Gtid | None = None
    last_time: int | None = None
    last_end: tuple[str, int] | None = None   #: (file, position) after the last one
    stopped: bool = False                     #: stopped at a transaction past the point
    _magic: bool = False
    _including: bool = False

    def __post_init__(self) -> None:
        self.state = parse_state(self.start_state)

    def passing(self, file: str, events: Iterable[tuple[Event, bytes]]) -> Iterator[bytes]:
        """The bytes of segment ``file``'s events that the replay feeds on."""
        tracker = Transactions()
        for event, data in events:
            if self.done:
                return
            if event.type == FORMAT_DESCRIPTION_EVENT:
                yield data if self._magic else MAGIC + data
                self._magic = True
                continue
            started, ended = tracker.add(event, data[HEADER_BYTES:])
            if started is not None:
                self._including = self._begin(started, event, file)
                if self.stopped:
                    return
            if self._including:
                yield data
            if ended is not None and self._including:
                self._including = False
                self.last_end = (file, ended.end)

    @property
    def done(self) -> bool:
        """Stopped past the point, or the point's own transaction is replayed."""
        if self.stopped:
            return True
        point = self.point
        if self._including or self.last_end is None:
            return False
        if point.gtid is not None:
            return self.last == point.gtid
        if point.file is not None:
            return self.last_end == (point.file, point.position)
        return False

    def _begin(self, gtid: Gtid, event: Event, file: str) -> bool:
        """Whether the transaction starting with ``event`` is replayed."""
        if contains(self.state, gtid):
            return False
        point = self.point
        if point.gtid is not None and gtid.domain == point.gtid.domain \
                and gtid.seq > point.gtid.seq:
            self.stopped = True  # past the point (already held by the snapshot, say)
            return False
        if point.time is not None and event.timestamp > point.time.timestamp():
            self.stopped = True
            return False
        if point.file is not None and file == point.file and event.start >= (point.position or 0):
            self.stopped = True
            return False
        missing = missing_between(self.state, gtid)
        if missing:
            raise IntegrityError(f"the archived binlog skips {missing} transaction(s) between "
                                 f"{format_state(self.state)} and {gtid}: the replay would "
                                 "not reach the point; nothing past the gap was replayed")
        self.state = advance(self.state, [gtid])
        self.transactions += 1
        self.last, self.last_time = gtid, event.timestamp
        return True

    def ended_at_point(self) -> str | None:
        """None if the replay ended exactly at the point, else why not."""
        point = self.point
        if point.gtid is not None and self.last != point.gtid \
                and not contains(parse_state(self.start_state), point.gtid):
            return f"the replay ended at {self.last or self.start_state}, not at {point.gtid}"
        if point.file is not None and self.last_end != (point.file, point.position) \
                and self.transactions:
            where = f"{self.last_end[0]}:{self.last_end[1]}" if self.last_end else "nothing"
            return (f"the replay ended at {where}, not at {point.file}:{point.position} "
                    "(a position must be the end of a transaction)")
        if point.time is not None and not self.stopped \
                and not all(contains(self.state, g) for g in parse_state(self.end_state).values()):
            return (f"the replay ended at {self.last or self.start_state}, short of the "
                    f"archive's planned end {self.end_state} and without reaching a "
                    "transaction stamped after the point: the archived binlog it read ended "
                    "early")
        return None
