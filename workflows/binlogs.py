"""Archived binlog segments, and the decisions made over them: where archiving goes on,
what gap it found, what the recoverable window is.

A *segment* is a piece ``[start, end)`` of one binlog file of one server, holding whole
transactions, stored with its GTID range and times (``docs/repository-format.md``).
Segments of one source are numbered 1, 2, … in archive order; each names the *span*
it belongs to: a run of segments without a gap, numbered by its first segment. A gap
(binlogs purged before they were archived, a server with a new binlog sequence, a
changed server id or GTID domain) starts a new span, and nothing is ever replayed
across two spans.

Archiving goes on from the last segment: by file and position on the same server,
else (another Galera node, a restarted server) by GTID, skipping what is archived.
Pure: the server's answers are values (``ServerView``), the decisions are values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from workflows.binlog_events import Group, Piece
from workflows.gtids import (
    Gtid,
    advance,
    at_or_before,
    contains,
    format_state,
    missing_between,
    parse_state,
)
from workflows.snapshots import Stream

#: The first event's position in every binlog file (after the 4 magic bytes).
FILE_START = 4
#: Binlog timestamps' resolution.
TIME_RESOLUTION = timedelta(seconds=1)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Gap(_Wire):
    """Why the archive is not continuous before a span, and what is missing."""

    reason: str
    detected_at: datetime
    archived: str                 #: GTID state archived before the gap
    resumed: str                  #: GTID state where archiving resumed


class BinlogSegment(_Wire):
    seq: int = Field(ge=1)
    span: int = Field(ge=1)       #: seq of the first segment of its gapless run
    source: str                   #: the BackupConfiguration that archives it
    server: str                   #: host:port it was read from
    server_id: int
    domain_id: int = 0            #: the server's @@gtid_domain_id then
    file: str
    start: int = Field(ge=0)      #: position of its first event in ``file``
    end: int = Field(ge=0)        #: position after its last event
    closed: bool = False          #: ``file`` ends here (Rotate or Stop event)
    gtid_start: str               #: GTID state before its first transaction
    gtid_end: str                 #: GTID state after its last
    transactions: int = Field(default=0, ge=0)
    first_gtid: str | None = None
    last_gtid: str | None = None
    first_time: datetime | None = None  #: commit time of its first transaction (1 s)
    last_time: datetime | None = None   #: and of its last
    stream: Stream | None = None  #: its bytes; None for a segment with no event
    gap: Gap | None = None        #: the gap before it (it starts a span)
    archived_at: datetime

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BinlogSegment:
        return cls.model_validate_json(data)


@dataclass(frozen=True)
class ServerView:
    """What the archiver learned from the server at the start of a run."""

    server: str                      #: host:port
    server_id: int
    domain_id: int                   #: @@gtid_domain_id
    files: Sequence[tuple[str, int]]  #: SHOW BINARY LOGS: (name, size), oldest first
    current: tuple[str, int]         #: SHOW MASTER STATUS: (file, position)
    state: str                       #: GTID state at ``current``
    file_states: Mapping[str, str] = field(default_factory=dict)  #: state at each file's start

    def size(self, name: str) -> int | None:
        return next((size for file, size in self.files if file == name), None)

    def after(self, name: str) -> str | None:
        names = [file for file, _ in self.files]
        return names[names.index(name) + 1] if name in names[:-1] else None


@dataclass(frozen=True)
class Start:
    """Where a run reads from, and what the archive holds before that."""

    file: str
    pos: int
    state: str                 #: GTID state the archive holds at (file, pos), or (located
                               #: by GTID) the archive's end, which the file may be behind
    skip_archived: bool = False  #: located by GTID: skip transactions already archived
    gap: Gap | None = None     #: archiving resumes here after this gap


def plan_start(last: BinlogSegment | None, view: ServerView, now: datetime) -> Start:
    """Where this run goes on: after ``last`` (None: the archive is new, so from the
    start of the server's current binlog file)."""
    if last is None:
        file = view.current[0]
        return Start(file, FILE_START, view.file_states.get(file, ""))
    archived = parse_state(last.gtid_end)
    current = parse_state(view.state)
    if not at_or_before(archived, current):
        return _resume_now(last, view, now, f"the server's binlog ({view.state or 'empty'}) is "
                           f"behind the archive ({last.gtid_end}): a new binlog sequence "
                           "(RESET MASTER, a new data directory) or another server")
    if last.server == view.server and last.server_id != view.server_id:
        return _resume_now(last, view, now, f"the server id of {view.server} changed from "
                           f"{last.server_id} to {view.server_id}")
    if last.server == view.server and last.domain_id != view.domain_id:
        return _resume_now(last, view, now, f"the GTID domain of {view.server} changed from "
                           f"{last.domain_id} to {view.domain_id}")
    size = view.size(last.file) if last.server == view.server else None
    if size is None or size < last.end:
        return _locate(last, view, now)
    if size > last.end and not last.closed:
        return Start(last.file, last.end, last.gtid_end)
    following = view.after(last.file)  # closed, or ended without Rotate (a crash)
    if following is not None:
        return Start(following, FILE_START, last.gtid_end)
    return Start(last.file, last.end, last.gtid_end)  # the active file: nothing new


def _locate(last: BinlogSegment, view: ServerView, now: datetime) -> Start:
    """By GTID: the newest binlog file that starts at or before what is archived."""
    archived = parse_state(last.gtid_end)
    fitting = [name for name, _ in view.files
               if name in view.file_states
               and at_or_before(parse_state(view.file_states[name]), archived)]
    if fitting:  # read from the file's start, skipping what the archive holds already
        return Start(fitting[-1], FILE_START, last.gtid_end, skip_archived=True)
    oldest = view.files[0][0] if view.files else "none"
    return _resume_now(last, view, now, f"the server no longer has the binlogs after "
                       f"{last.gtid_end} (its oldest, {oldest}, starts at "
                       f"{view.file_states.get(oldest) or 'unknown'}): purged before "
                       "they were archived")


def _resume_now(last: BinlogSegment, view: ServerView, now: datetime, reason: str) -> Start:
    file, pos = view.current
    return Start(file, pos, view.state, gap=Gap(reason=reason, detected_at=now,
                                                 archived=last.gtid_end, resumed=view.state))


def missing_gap(state: str, gtid: Gtid, missing: int, now: datetime) -> Gap:
    """The gap found inside what the server sent: transactions skipped over."""
    return Gap(reason=f"{missing} transaction(s) of GTID domain {gtid.domain} are missing "
                      f"between {state} and {gtid}", detected_at=now, archived=state,
               resumed=format_state({**parse_state(state), gtid.domain:
                                     Gtid(gtid.domain, gtid.server, gtid.seq - 1)}))


def spans(segments: Sequence[BinlogSegment]) -> list[list[BinlogSegment]]:
    """Segments (in archive order) grouped into their gapless runs, oldest first."""
    runs: dict[int, list[BinlogSegment]] = {}
    for segment in sorted(segments, key=lambda s: s.seq):
        runs.setdefault(segment.span, []).append(segment)
    return [runs[key] for key in sorted(runs)]


@dataclass(frozen=True)
class Cut:
    """What of a fetched piece becomes a segment."""

    start: int                 #: file position of its first event
    end: int                   #: after its last
    groups: tuple[Group, ...]  #: transactions new to the archive
    state_before: str
    state_after: str
    closed: bool               #: it ends the file
    gap: Gap | None = None
    more: bool = False         #: stopped before a gap: read again from ``end``


def cut_piece(piece: Piece, start: Start, now: datetime) -> Cut | None:
    """The segment a fetched piece makes: its whole transactions from ``start`` on,
    those already archived (a node's copy of them, a replayed duplicate) left
    uncounted; None if it holds nothing new. Missing transactions before the first
    one start a span (the gap); missing ones after it end the segment before them."""
    state, gap, begin = parse_state(start.state), start.gap, start.pos
    kept: list[Group] = []
    end = start.pos
    for group in piece.groups:
        if contains(state, group.gtid):
            if start.skip_archived and not kept:
                begin = end = group.end
            continue
        missing = missing_between(state, group.gtid)
        if missing and kept:
            return Cut(begin, end, tuple(kept), start.state, format_state(state), False,
                       gap, more=True)
        if missing:
            gap = gap or missing_gap(format_state(state), group.gtid, missing, now)
        kept.append(group)
        state = advance(state, [group.gtid])
        end = group.end
    end = max(end, piece.boundary or 0)
    if end <= begin and not piece.closed and gap is None:
        return None
    return Cut(begin, max(end, begin), tuple(kept), start.state, format_state(state),
               piece.closed, gap)


def archive_slot(now: float, interval_s: int) -> int:
    """The archive slot ``now`` falls in: unix seconds, a multiple of ``interval_s``,
    the same on every beat replica."""
    return int(now // interval_s) * interval_s
