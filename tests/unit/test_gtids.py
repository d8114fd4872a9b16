"""GTIDs and states as values, and the coordinates a dump states in its comments."""

from __future__ import annotations

import pytest

from workflows.gtids import (
    Coordinates,
    Gtid,
    advance,
    at_or_before,
    contains,
    dump_coordinates,
    format_state,
    missing_between,
    parse_state,
)

HEAD = b"""-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;
--
-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=1352;
--
INSERT INTO `t` VALUES (1,'-- CHANGE MASTER TO MASTER_LOG_FILE=''x'', MASTER_LOG_POS=9;');
"""
TAIL = b"""UNLOCK TABLES;
-- Preferably use GTID to start replication from GTID position:

-- SET GLOBAL gtid_slave_pos='0-7-13,1-2-5';
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;
-- Dump completed on 2026-12-06  6:15:33
"""


@pytest.mark.parametrize(("text", "expected"), [
    ("0-7-13", Gtid(0, 7, 13)),
    (" 1-2-5 ", Gtid(1, 2, 5)),
])
def test_a_gtid_parses(text: str, expected: Gtid) -> None:
    assert Gtid.parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["", "0-7", "a-b-c", "0-7-13,1-2-5", "-1-2-3"])
def test_what_is_not_a_gtid_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a GTID"):
        Gtid.parse(text)


def test_a_state_holds_the_last_gtid_of_each_domain() -> None:
    state = parse_state("1-2-5, 0-7-13")
    assert state == {0: Gtid(0, 7, 13), 1: Gtid(1, 2, 5)}
    assert format_state(state) == "0-7-13,1-2-5"
    assert parse_state("") == {}
    assert advance(state, [Gtid(0, 7, 14), Gtid(2, 9, 1), Gtid(0, 8, 15)]) == {
        0: Gtid(0, 8, 15), 1: Gtid(1, 2, 5), 2: Gtid(2, 9, 1)}


@pytest.mark.parametrize(("state", "gtid", "inside", "missing"), [
    ("0-7-13", "0-7-13", True, 0),
    ("0-7-13", "0-9-12", True, 0),   # another server id, same domain: by sequence
    ("0-7-13", "0-7-14", False, 0),
    ("0-7-13", "0-7-16", False, 2),
    ("0-7-13", "1-7-1", False, 0),   # a domain the state does not know yet
    ("", "0-1-1", False, 0),
])
def test_containment_and_what_is_missing_go_by_sequence_within_a_domain(
        state: str, gtid: str, inside: bool, missing: int) -> None:
    assert contains(parse_state(state), Gtid.parse(gtid)) is inside
    assert missing_between(parse_state(state), Gtid.parse(gtid)) == missing


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("0-7-13", "0-7-13", True),
    ("0-7-12", "0-7-13,1-1-1", True),
    ("0-7-13,1-1-2", "0-7-13,1-1-1", False),
    ("", "0-1-1", True),
    ("0-1-1", "", False),
])
def test_a_state_is_at_or_before_another_in_every_domain(a: str, b: str, expected: bool) -> None:
    assert at_or_before(parse_state(a), parse_state(b)) is expected


def test_a_dump_states_file_and_position_in_its_head_and_the_gtid_at_its_end() -> None:
    assert dump_coordinates(HEAD, TAIL) == Coordinates(gtid="0-7-13,1-2-5",
                                                       log_file="mysql-bin.000002", log_pos=1352)


def test_a_dump_without_coordinates_states_none() -> None:
    assert dump_coordinates(b"-- MariaDB dump 10.19\n", TAIL) is None
    assert dump_coordinates(HEAD, b"-- Dump completed\n") == Coordinates(
        gtid=None, log_file="mysql-bin.000002", log_pos=1352)
