"""Where an archive run goes on, and what of a fetched piece becomes a segment: by file
and position on the same server, by GTID elsewhere, and a gap when something is lost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.binlog import BinlogFile
from workflows.binlog_events import read_piece
from workflows.binlogs import BinlogSegment, ServerView, Start, cut_piece, plan_start
from workflows.gtids import Gtid

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FILES = (("mysql-bin.000001", 1000), ("mysql-bin.000002", 800))


def segment(**fields: Any) -> BinlogSegment:
    values: dict[str, Any] = {
        "seq": 3, "span": 1, "source": "nightly", "server": "db-0:3306", "server_id": 7,
        "file": "mysql-bin.000001", "start": 400, "end": 900, "gtid_start": "0-7-5",
        "gtid_end": "0-7-9", "archived_at": NOW}
    return BinlogSegment(**(values | fields))


def view(**fields: Any) -> ServerView:
    values: dict[str, Any] = {
        "server": "db-0:3306", "server_id": 7, "domain_id": 0, "files": FILES,
        "current": ("mysql-bin.000002", 800), "state": "0-7-12",
        "file_states": {"mysql-bin.000001": "0-7-2", "mysql-bin.000002": "0-7-10"}}
    return ServerView(**(values | fields))


@pytest.mark.parametrize(("last", "server", "expected"), [
    # a new archive starts at the beginning of the current file
    (None, view(), Start("mysql-bin.000002", 4, "0-7-10")),
    # same server: on from the position, or into the next file once closed
    (segment(), view(), Start("mysql-bin.000001", 900, "0-7-9")),
    (segment(closed=True), view(), Start("mysql-bin.000002", 4, "0-7-9")),
    # the file ended without Rotate (a crash) and the server went on in a new one
    (segment(end=1000), view(), Start("mysql-bin.000002", 4, "0-7-9")),
    # the active file has nothing new
    (segment(file="mysql-bin.000002", end=800, gtid_end="0-7-12"), view(),
     Start("mysql-bin.000002", 800, "0-7-12")),
    # another server (a Galera node), same GTIDs: by GTID from the start of its newest
    # file that begins before the archive's end, skipping what the archive holds
    (segment(), view(server="db-1:3306", server_id=8),
     Start("mysql-bin.000001", 4, "0-7-9", skip_archived=True)),
    # the same server with its archived file purged, the next one still there
    (segment(file="mysql-bin.000000"), view(),
     Start("mysql-bin.000001", 4, "0-7-9", skip_archived=True)),
])
def test_where_archiving_goes_on(last: BinlogSegment | None, server: ServerView,
                                 expected: Start) -> None:
    assert plan_start(last, server, NOW) == expected


@pytest.mark.parametrize(("last", "server", "reason"), [
    (segment(gtid_end="0-7-1"), view(file_states={"mysql-bin.000001": "0-7-2",
                                                  "mysql-bin.000002": "0-7-10"},
                                     server="db-1:3306"),
     "purged before they were archived"),
    (segment(gtid_end="0-7-20"), view(), "behind the archive"),
    (segment(), view(server_id=9), "server id of db-0:3306 changed from 7 to 9"),
    (segment(domain_id=0), view(domain_id=3), "GTID domain of db-0:3306 changed from 0 to 3"),
])
def test_a_gap_is_reported_and_archiving_resumes_at_the_current_position(
        last: BinlogSegment, server: ServerView, reason: str) -> None:
    start = plan_start(last, server, NOW)
    assert start.gap is not None and reason in start.gap.reason
    assert (start.file, start.pos, start.state) == ("mysql-bin.000002", 800, "0-7-12")
    assert (start.gap.archived, start.gap.resumed) == (last.gtid_end, "0-7-12")


def binlog(*seqs: int, closed: bool = False) -> BinlogFile:
    f = BinlogFile()
    f.header([Gtid(0, 7, seqs[0] - 1)] if seqs else [])
    for seq in seqs:
        f.transaction(seq, 1_700_000_000 + seq)
    if closed:
        f.rotate("mysql-bin.000003")
    return f


def test_a_piece_becomes_a_segment_of_its_whole_transactions() -> None:
    f = binlog(6, 7, 8)
    cut = cut_piece(read_piece([bytes(f.data)], 4), Start("f", 4, "0-7-5"), NOW)
    assert cut is not None
    assert [str(g.gtid) for g in cut.groups] == ["0-7-6", "0-7-7", "0-7-8"]
    assert (cut.start, cut.end, cut.state_before, cut.state_after) == (
        4, len(f.data), "0-7-5", "0-7-8")
    assert cut.gap is None and not cut.closed and not cut.more


def test_nothing_new_makes_no_segment_but_a_rotation_does() -> None:
    f = binlog(6)
    end = len(f.data)
    assert cut_piece(read_piece([bytes(f.data)], end), Start("f", end, "0-7-6"), NOW) is None
    f.rotate("mysql-bin.000003")
    cut = cut_piece(read_piece([bytes(f.data)], end), Start("f", end, "0-7-6"), NOW)
    assert cut is not None and cut.closed and not cut.groups and cut.end == len(f.data)


def test_transactions_already_archived_are_skipped_when_located_by_gtid() -> None:
    f = binlog(6, 7, 8)
    piece = read_piece([bytes(f.data)], 4)
    cut = cut_piece(piece, Start("f", 4, "0-7-7", skip_archived=True), NOW)
    assert cut is not None and [g.gtid.seq for g in cut.groups] == [8]
    assert cut.start == piece.groups[1].end and cut.state_before == "0-7-7"


def test_a_file_located_by_gtid_yields_only_what_the_archive_lacks() -> None:
    last = segment(gtid_end="0-7-7")
    node = view(server="db-1:3306", server_id=8, files=(("mysql-bin.000001", 1000),),
                current=("mysql-bin.000001", 1000), state="0-7-8",
                file_states={"mysql-bin.000001": "0-7-5"})
    start = plan_start(last, node, NOW)
    f = binlog(6, 7, 8)
    cut = cut_piece(read_piece([bytes(f.data)], start.pos), start, NOW)
    assert cut is not None and [g.gtid.seq for g in cut.groups] == [8]  # 6, 7: archived
    assert (cut.state_before, cut.state_after, cut.gap) == ("0-7-7", "0-7-8", None)


def test_missing_transactions_before_the_first_start_a_span_with_a_gap() -> None:
    f = binlog(9, 10)
    cut = cut_piece(read_piece([bytes(f.data)], 4), Start("f", 4, "0-7-6"), NOW)
    assert cut is not None and cut.gap is not None
    assert "2 transaction(s) of GTID domain 0 are missing between 0-7-6 and 0-7-9" \
        in cut.gap.reason
    assert [g.gtid.seq for g in cut.groups] == [9, 10]


def test_missing_transactions_after_the_first_end_the_segment_before_them() -> None:
    f = BinlogFile()
    f.header([Gtid(0, 7, 5)])
    _, end = f.transaction(6)
    f.transaction(9)
    cut = cut_piece(read_piece([bytes(f.data)], 4), Start("f", 4, "0-7-5"), NOW)
    assert cut is not None and cut.more and cut.end == end and cut.state_after == "0-7-6"
    again = cut_piece(read_piece([bytes(f.data)], end), Start("f", end, "0-7-6"), NOW)
    assert again is not None and again.gap is not None and again.groups[0].gtid.seq == 9
