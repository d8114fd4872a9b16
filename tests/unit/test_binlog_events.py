"""Reading binlog bytes into transactions: where each starts and ends, its GTID and
time, and where a piece may be cut."""

from __future__ import annotations

import pytest

from tests.support.binlog import BinlogFile
from workflows.binlog_events import events, read_piece
from workflows.gtids import Gtid


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_transactions_are_found_whatever_the_chunks(chunk_bytes: int) -> None:
    f = BinlogFile()
    f.header([Gtid(0, 7, 5)])
    first = f.transaction(6, 1_700_000_001)
    f.ddl(7, "CREATE TABLE t2 (id INT)", 1_700_000_002)
    third = f.transaction(8, 1_700_000_003, commit="COMMIT")
    piece = read_piece(chunked(bytes(f.data), chunk_bytes), since=4)
    assert piece.gtid_list == [Gtid(0, 7, 5)]
    assert [(str(g.gtid), g.timestamp) for g in piece.groups] == [
        ("0-7-6", 1_700_000_001), ("0-7-7", 1_700_000_002), ("0-7-8", 1_700_000_003)]
    assert (piece.groups[0].start, piece.groups[0].end) == first
    assert (piece.groups[2].start, piece.groups[2].end) == third
    assert piece.boundary == len(f.data) and not piece.closed
    assert piece.format_event


def test_a_torn_transaction_at_the_end_is_not_counted_and_the_cut_stays_before_it() -> None:
    f = BinlogFile()
    f.header([])
    _, end = f.transaction(1)
    f.transaction(2)
    torn = bytes(f.data[:-10])  # the last event is cut short
    piece = read_piece([torn], since=4)
    assert [g.gtid.seq for g in piece.groups] == [1]
    assert piece.boundary == end
    half = bytes(f.data[:end + 30])  # the second transaction half there, its events whole
    assert read_piece([half], since=4).boundary == end


def test_a_rotate_or_stop_event_closes_the_file() -> None:
    for close in ("rotate", "stop"):
        f = BinlogFile()
        f.header([])
        f.transaction(1)
        f.rotate("mysql-bin.000002") if close == "rotate" else f.stop()
        piece = read_piece([bytes(f.data)], since=4)
        assert piece.closed and piece.boundary == len(f.data)


def test_events_before_the_start_position_are_left_out() -> None:
    f = BinlogFile()
    f.header([])
    _, end = f.transaction(1)
    f.transaction(2)
    piece = read_piece([bytes(f.data)], since=end)
    assert [g.gtid.seq for g in piece.groups] == [2]
    assert piece.gtid_list is None


def test_bytes_that_are_not_a_binlog_are_refused() -> None:
    with pytest.raises(ValueError, match="magic"):
        list(events([b"-- MariaDB dump"]))
