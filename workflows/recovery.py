"""Point-in-time recovery decisions: the recoverable window, the snapshot and the
segments a restore to a point uses, and the segments retention may delete.

What a point means:

- a GTID ``d-s-n``: every transaction up to and including that one, in binlog order;
- a file and position: every transaction that ends at or before that byte of that
  binlog file (it must be the end of a transaction);
- a time ``T`` (RFC 3339, with its zone): binlog times have one-second resolution and
  are taken when a transaction's commit statement starts, so T means "every
  transaction stamped at or before T's second, up to the first one stamped later" —
  what ``mariadb-binlog --stop-datetime=T+1s`` replays. Sub-second digits are dropped.

A window runs from the oldest snapshot that the archive can carry forward (its finish
time: every transaction in it is stamped no later) to the latest restorable time: the
last archived transaction's second, once the archive has read past that second (before
that, one second less: more transactions of the same second may still come). Windows
never cross a gap (``workflows/binlogs.py``): each span has its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from workflows.binlogs import TIME_RESOLUTION, BinlogSegment, Gap, spans
from workflows.errors import PrecheckFailed
from workflows.gtids import Gtid, at_or_before, contains, parse_state
from workflows.resources.restore import PointInTime
from workflows.snapshots import Snapshot


@dataclass(frozen=True)
class Point:
    """Where a restore should end: exactly one of ``time``, ``gtid``, file + position."""

    time: datetime | None = None
    gtid: Gtid | None = None
    file: str | None = None
    position: int | None = None

    def __str__(self) -> str:
        if self.time is not None:
            return f"time {iso(self.time)}"
        if self.gtid is not None:
            return f"GTID {self.gtid}"
        return f"position {self.file}:{self.position}"


@dataclass(frozen=True)
class SnapshotPoint:
    """A snapshot as the archive sees it."""

    id: str
    state: str          #: its GTID state
    finished_at: datetime
    log_file: str | None = None
    log_pos: int | None = None


@dataclass(frozen=True)
class Window:
    span: int
    start: datetime | None      #: None: no snapshot in this span yet
    end: datetime | None        #: None: no transaction archived in it yet
    snapshot: str | None        #: the oldest snapshot it starts from
    gap: Gap | None             #: the gap before the span

    def describe(self) -> str:
        if self.start is None:
            return "none yet (no snapshot with binlog coordinates since archiving began)"
        return f"from {iso(self.start)} to {iso(self.end or self.start)}"


@dataclass(frozen=True)
class Recovery:
    """A restore to a point: this snapshot, then these segments, up to the point."""

    snapshot: str
    start_state: str
    segments: tuple[BinlogSegment, ...]
    point: Point

    @property
    def end_state(self) -> str:
        """The GTID state after the last planned segment: where a replay to a time that
        did not stop at a later-stamped transaction must have arrived."""
        return self.segments[-1].gtid_end if self.segments else self.start_state


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def snapshot_points(snapshots: Iterable[Snapshot], source: str) -> list[SnapshotPoint]:
    """The snapshots of ``source`` that know their GTID state, oldest first."""
    points = [SnapshotPoint(s.id, s.position.gtid, s.finished_at, s.position.log_file,
                            s.position.log_pos)
              for s in snapshots
              if s.configuration == source and s.position is not None and s.position.gtid]
    return sorted(points, key=lambda p: p.finished_at)


def within(span: Sequence[BinlogSegment], point: SnapshotPoint) -> bool:
    """Whether the archive span can carry ``point`` forward: it starts at or before it
    and reaches it."""
    state = parse_state(point.state)
    return (at_or_before(parse_state(span[0].gtid_start), state)
            and at_or_before(state, parse_state(span[-1].gtid_end)))


def latest_restorable(span: Sequence[BinlogSegment]) -> datetime | None:
    """The last second the span can restore to (see the module docstring)."""
    timed = [s for s in span if s.last_time is not None]
    if not timed:
        return None
    last = timed[-1]
    assert last.last_time is not None
    newest_read = span[-1].archived_at
    return last.last_time if newest_read >= last.last_time + TIME_RESOLUTION \
        else last.last_time - TIME_RESOLUTION


def windows(segments: Sequence[BinlogSegment], points: Sequence[SnapshotPoint]) -> list[Window]:
    """Each span's window, oldest first."""
    out = []
    for span in spans(segments):
        usable = [p for p in points if within(span, p)]
        end = latest_restorable(span)
        start = usable[0].finished_at if usable else None
        if start is not None and (end is None or end < start):
            end = start  # nothing archived after the snapshot: it is the whole window
        out.append(Window(span[0].span, start, end, usable[0].id if usable else None,
                          span[0].gap))
    return out


def describe_windows(found: Sequence[Window]) -> str:
    if not found:
        return "there is no archived binlog yet"
    parts = []
    for window in found:
        gap = f" (after a gap: {window.gap.reason})" if window.gap else ""
        parts.append(f"{window.describe()}{gap}")
    return "recoverable: " + "; ".join(parts)


def plan_recovery(point: Point, segments: Sequence[BinlogSegment],
                  points: Sequence[SnapshotPoint]) -> Recovery:
    """The snapshot and segments of a restore to ``point``; ``PrecheckFailed`` naming
    the windows and gaps if the point is outside every window."""
    found = windows(segments, points)
    for span in spans(segments):
        usable = [p for p in points if within(span, p)]
        if not _in_span(point, span, usable):
            continue
        before = [p for p in usable if _snapshot_before(p, point)]
        if not before:
            break
        snapshot = before[-1]
        start = parse_state(snapshot.state)
        needed = [s for s in span if not at_or_before(parse_state(s.gtid_end), start)]
        if point.gtid is not None and contains(start, point.gtid):
            needed = []  # the snapshot holds the point's transaction: nothing to replay
        return Recovery(snapshot.id, snapshot.state, tuple(_up_to(needed, point)), point)
    raise PrecheckFailed(f"{point} is outside the recoverable window: "
                         f"{describe_windows(found)}")


def _in_span(point: Point, span: Sequence[BinlogSegment], usable: Sequence[SnapshotPoint]
             ) -> bool:
    if point.gtid is not None:
        gtid = point.gtid
        return any(_seq(s.gtid_start, gtid) < gtid.seq <= _seq(s.gtid_end, gtid) for s in span) \
            or any(_seq(p.state, gtid) == gtid.seq for p in usable)
    if point.file is not None:
        return any(s.file == point.file and s.start <= (point.position or 0) <= s.end
                   for s in span)
    assert point.time is not None
    end = latest_restorable(span)
    start = _second(usable[0].finished_at) if usable else None
    if start is None:
        return False
    return start <= point.time <= max(end or start, start)


def _seq(state: str, gtid: Gtid) -> int:
    known = parse_state(state).get(gtid.domain)
    return -1 if known is None else known.seq


def _snapshot_before(snapshot: SnapshotPoint, point: Point) -> bool:
    if point.gtid is not None:
        return _seq(snapshot.state, point.gtid) <= point.gtid.seq
    if point.file is not None:
        return snapshot.log_file is not None and (snapshot.log_file, snapshot.log_pos or 0) \
            <= (point.file, point.position or 0)
    assert point.time is not None
    return _second(snapshot.finished_at) <= point.time


def _second(moment: datetime) -> datetime:
    """The binlog second ``moment`` falls in: a snapshot finished within second T holds
    part of it, and the replay from it adds the rest (a time T reaches T's end)."""
    return moment.replace(microsecond=0)


def _up_to(segments: Sequence[BinlogSegment], point: Point) -> list[BinlogSegment]:
    """The segments up to the one that holds the point (the replay stops inside it)."""
    out = []
    for segment in segments:
        if point.time is not None and segment.first_time is not None \
                and segment.first_time > point.time:
            break
        if point.gtid is not None and _seq(segment.gtid_start, point.gtid) >= point.gtid.seq:
            break
        out.append(segment)
        if point.gtid is not None and _seq(segment.gtid_end, point.gtid) >= point.gtid.seq:
            break
        if point.file == segment.file and (point.position or 0) <= segment.end:
            break
    return out


def point_of(spec: PointInTime) -> Point:
    """A RestoreSession's ``spec.pointInTime`` as a Point (a time to its second, UTC)."""
    if spec.time is not None:
        return Point(time=spec.time.astimezone(UTC).replace(microsecond=0))
    if spec.gtid is not None:
        return Point(gtid=Gtid.parse(spec.gtid))
    return Point(file=spec.file, position=spec.position)


def binlog_source(named: str | None, snapshots: Iterable[Snapshot], archived: Sequence[str], *,
                  repository: str) -> str:
    """The BackupConfiguration whose archived binlog a restore to a point replays: the
    one the restore names (``sourceHost``: the configuration, or the AppBinding of its
    snapshots), else the repository's only one."""
    if named is not None:
        if named in archived:
            return named
        configurations = {s.configuration for s in snapshots
                          if s.target == named and s.configuration in archived}
        if len(configurations) == 1:
            return str(configurations.pop())
    elif len(archived) == 1:
        return archived[0]
    which = f' of "{named}"' if named else ""
    held = ", ".join(archived) or "none"
    raise PrecheckFailed(f'Repository "{repository}" holds no single archived binlog{which} to '
                         f"replay (archived binlogs of: {held}); name the BackupConfiguration "
                         "in spec.target.rules[].sourceHost (stashq restore --source)")


def binlogs_to_forget(segments: Sequence[BinlogSegment],
                      kept: Sequence[SnapshotPoint]) -> list[BinlogSegment]:
    """The segments no kept snapshot needs: in each span, those before its oldest kept
    snapshot (and every segment of a span with none). The newest segment always stays:
    it is where archiving goes on."""
    forget = []
    last_seq = max((s.seq for s in segments), default=0)
    for span in spans(segments):
        usable = [p for p in kept if within(span, p)]
        oldest = parse_state(usable[0].state) if usable else None
        for segment in span:
            if segment.seq == last_seq:
                continue
            if oldest is None or at_or_before(parse_state(segment.gtid_end), oldest):
                forget.append(segment)
    return forget

