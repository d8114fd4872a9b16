"""Point-in-time decisions over values: the window, the snapshot and segments a restore
to a point uses, a point outside or across a gap refused, what retention may delete,
and the replay filter's stop and skip rules on real binlog bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.binlog import BinlogFile
from workflows.binlog_events import events, read_piece
from workflows.binlogs import BinlogSegment, Gap
from workflows.errors import IntegrityError, PrecheckFailed
from workflows.gtids import Gtid
from workflows.recovery import (
    Point,
    SnapshotPoint,
    binlogs_to_forget,
    plan_recovery,
    windows,
)
from workflows.replay import ReplayFilter

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def segment(seq: int, first: int, last: int, *, span: int = 1, gap: bool = False,
            **fields: Any) -> BinlogSegment:
    """Segment ``seq`` holding transactions ``first``..``last`` of domain 0, one per
    second from T0 + first; archived a minute after its last."""
    values: dict[str, Any] = {
        "seq": seq, "span": span, "source": "nightly", "server": "db-0:3306", "server_id": 7,
        "file": "mysql-bin.000001", "start": 4 + first * 100, "end": 4 + (last + 1) * 100,
        "gtid_start": f"0-7-{first - 1}", "gtid_end": f"0-7-{last}",
        "transactions": last - first + 1, "first_gtid": f"0-7-{first}",
        "last_gtid": f"0-7-{last}", "first_time": at(first), "last_time": at(last),
        "archived_at": at(last + 60),
        "gap": Gap(reason="purged", detected_at=at(first), archived="0-7-1",
                   resumed=f"0-7-{first - 1}") if gap else None}
    return BinlogSegment(**(values | fields))


#: Two spans: transactions 1..30 (segments 1-3), a gap, then 41..60 (segments 4-5).
SEGMENTS = [segment(1, 1, 10), segment(2, 11, 20), segment(3, 21, 30),
            segment(4, 41, 50, span=4, gap=True), segment(5, 51, 60, span=4)]
SNAPSHOTS = [SnapshotPoint("s5", "0-7-5", at(5), "mysql-bin.000001", 604),
             SnapshotPoint("s15", "0-7-15", at(15), "mysql-bin.000001", 1604),
             SnapshotPoint("s45", "0-7-45", at(45), "mysql-bin.000001", 4604)]


def test_each_span_has_its_window_from_its_oldest_snapshot_to_its_last_transaction() -> None:
    found = windows(SEGMENTS, SNAPSHOTS)
    assert [(w.span, w.start, w.end, w.snapshot) for w in found] == [
        (1, at(5), at(30), "s5"), (4, at(45), at(60), "s45")]
    assert found[1].gap is not None and found[0].gap is None


def test_the_last_second_counts_only_once_the_archive_read_past_it() -> None:
    fresh = [segment(1, 1, 10, archived_at=at(10) + timedelta(milliseconds=300))]
    assert windows(fresh, SNAPSHOTS[:1])[0].end == at(9)


@pytest.mark.parametrize(("point", "snapshot", "segments"), [
    (Point(gtid=Gtid(0, 7, 12)), "s5", [1, 2]),
    (Point(gtid=Gtid(0, 7, 25)), "s15", [2, 3]),
    (Point(gtid=Gtid(0, 7, 15)), "s15", []),           # exactly a snapshot's GTID
    (Point(time=at(17)), "s15", [2]),
    (Point(time=at(12)), "s5", [1, 2]),
    (Point(time=at(30)), "s15", [2, 3]),
    (Point(time=at(55)), "s45", [4, 5]),
    (Point(file="mysql-bin.000001", position=4 + 13 * 100), "s5", [1, 2]),
])
def test_the_newest_snapshot_before_the_point_and_the_segments_after_it(
        point: Point, snapshot: str, segments: list[int]) -> None:
    recovery = plan_recovery(point, SEGMENTS, SNAPSHOTS)
    assert recovery.snapshot == snapshot
    assert [s.seq for s in recovery.segments] == segments


def test_a_snapshot_finished_within_the_point_s_second_is_before_it() -> None:
    late = SnapshotPoint("s15", "0-7-15", at(15) + timedelta(milliseconds=600),
                         "mysql-bin.000001", 1604)
    recovery = plan_recovery(Point(time=at(15)), SEGMENTS, [SNAPSHOTS[0], late])
    assert recovery.snapshot == "s15" and [s.seq for s in recovery.segments] == [2]
    only = windows(SEGMENTS[:3], [late])[0]
    assert plan_recovery(Point(time=at(15)), SEGMENTS[:3], [late]).snapshot == "s15"
    assert only.start == late.finished_at  # shown to the second: 10:00:15Z, and accepted


@pytest.mark.parametrize(("point", "message"), [
    (Point(time=at(35)), "time 2026-12-06T10:00:35Z is outside the recoverable window: "
                         "recoverable: from 2026-12-06T10:00:05Z to 2026-12-06T10:00:30Z; "
                         "from 2026-12-06T10:00:45Z to 2026-12-06T10:01:00Z (after a gap: "
                         "purged)"),
    (Point(time=at(2)), "outside the recoverable window"),   # before the oldest snapshot
    (Point(time=at(61)), "outside the recoverable window"),  # after the last transaction
    (Point(gtid=Gtid(0, 7, 35)), "GTID 0-7-35 is outside"),   # inside the gap
    (Point(gtid=Gtid(0, 7, 42)), "GTID 0-7-42 is outside"),   # after the gap, before s45
])
def test_a_point_outside_every_window_or_across_a_gap_is_refused_naming_them(
        point: Point, message: str) -> None:
    with pytest.raises(PrecheckFailed) as refused:
        plan_recovery(point, SEGMENTS, SNAPSHOTS)
    assert message in str(refused.value)


def test_retention_keeps_exactly_the_segments_the_kept_snapshots_need() -> None:
    kept = [SNAPSHOTS[1]]  # s15: segment 2 (11..20) holds what follows it, 3 too
    assert [s.seq for s in binlogs_to_forget(SEGMENTS, kept)] == [1, 4]  # 5 is the newest
    assert [s.seq for s in binlogs_to_forget(SEGMENTS, SNAPSHOTS)] == []
    assert [s.seq for s in binlogs_to_forget(SEGMENTS, [])] == [1, 2, 3, 4]


def replayed(data: bytes, start: str, point: Point, end: str = ""
             ) -> tuple[list[int], ReplayFilter]:
    replay = ReplayFilter(start, point, end)
    fed = b"".join(replay.passing("mysql-bin.000001", events([data])))
    return [g.gtid.seq for g in read_piece([fed], 0).groups], replay


def binlog(seqs: range) -> bytes:
    f = BinlogFile()
    f.header([Gtid(0, 7, seqs[0] - 1)])
    for seq in seqs:
        f.transaction(seq, int(at(seq).timestamp()))
    return bytes(f.data)


@pytest.mark.parametrize(("point", "expected"), [
    (Point(gtid=Gtid(0, 7, 7)), [4, 5, 6, 7]),
    (Point(gtid=Gtid(0, 7, 2)), []),   # the snapshot holds it already: nothing after it
    (Point(time=at(6)), [4, 5, 6]),
    (Point(time=at(99)), [4, 5, 6, 7, 8, 9, 10]),
])
def test_the_replay_skips_what_the_snapshot_holds_and_stops_at_the_point(
        point: Point, expected: list[int]) -> None:
    seqs, replay = replayed(binlog(range(1, 11)), "0-7-3", point)
    assert seqs == expected
    assert replay.ended_at_point() is None


def test_a_replay_that_does_not_reach_its_gtid_says_so() -> None:
    _, replay = replayed(binlog(range(1, 6)), "0-7-3", Point(gtid=Gtid(0, 7, 8)))
    assert replay.ended_at_point() == "the replay ended at 0-7-5, not at 0-7-8"


@pytest.mark.parametrize(("point", "end", "problem"), [
    (Point(time=at(99)), "0-7-10", "the replay ended at 0-7-5, short of the archive's planned "
                                   "end 0-7-10"),
    (Point(time=at(99)), "0-7-5", None),   # all of the archive, all before the point
    (Point(time=at(4)), "0-7-10", None),   # stopped at 0-7-5, stamped after the point
])
def test_a_replay_to_a_time_that_ends_short_of_the_planned_end_says_so(
        point: Point, end: str, problem: str | None) -> None:
    _, replay = replayed(binlog(range(1, 6)), "0-7-3", point, end)
    said = replay.ended_at_point()
    assert (said is None and problem is None) or (problem is not None and problem in str(said))


def test_a_skipped_transaction_fails_the_replay() -> None:
    f = BinlogFile()
    f.header([])
    f.transaction(4)
    f.transaction(6)
    with pytest.raises(IntegrityError, match="skips 1 transaction"):
        replayed(bytes(f.data), "0-7-3", Point(gtid=Gtid(0, 7, 6)))
