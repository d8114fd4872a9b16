"""Row counts and digests read from a dump stream: how rows are found, that chunking
and statement boundaries do not matter, and what a comparison says."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.row_digests import (
    RowDigester,
    combine,
    compare_tables,
    digest_text,
)

ROWS = [b"1,'a',NULL", b"2,'it\\'s),(odd',0x00ff", b"3,'\\\\',2.5"]
DUMP = b"".join([
    b"-- MariaDB dump\n",
    b"CREATE TABLE `t` (id int);\n",
    b"INSERT INTO `t` VALUES (" + b"),(".join(ROWS[:2]) + b");\n",
    b"INSERT INTO `t` VALUES (" + ROWS[2] + b");\n",
    b"INSERT INTO `odd``name` (`id`, `v`) VALUES (7,'x');\n",
    b"USE `other`;\n",
    b"INSERT INTO `t` VALUES (9,'z');\n",
    b"-- Dump completed\n",
])


#: The same rows as mariadb-dump (10.11 on) writes them: a row per line.
DUMP_MULTI = b"".join([
    b"-- MariaDB dump\n",
    b"INSERT INTO `t` VALUES\n(" + b"),\n(".join(ROWS[:2]) + b");\n",
    b"INSERT INTO `t` VALUES\n(" + ROWS[2] + b");\n",
    b"INSERT INTO `odd``name` (`id`, `v`) VALUES\n(7,'x');\n",
    b"USE `other`;\n",
    b"INSERT INTO `t` VALUES\n(9,'z');\n",
    b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\n",
])


def digest_of(rows: list[bytes]) -> str:
    return digest_text(sum(zlib.crc32(r) for r in rows) % 2**64)


def test_rows_and_digests_per_table_as_dumped() -> None:
    tables = RowDigester("shop")
    tables.feed(DUMP)
    result = {t: (c.rows, digest_text(c.digest)) for t, c in tables.finish().items()}
    # The value holding "),(" counts as two pieces: the same on both sides of a check.
    pieces = [ROWS[0], b"2,'it\\'s", b"odd',0x00ff", ROWS[2]]
    assert result == {"shop.t": (4, digest_of(pieces)),
                      "shop.odd`name": (1, digest_of([b"7,'x'"])),
                      "other.t": (1, digest_of([b"9,'z'"]))}


def test_a_row_per_line_counts_each_row_once_exactly() -> None:
    tables = RowDigester("shop")
    tables.feed(DUMP_MULTI)
    result = {t: (c.rows, digest_text(c.digest)) for t, c in tables.finish().items()}
    # A row per line: the value holding "),(" is one row, as it is.
    assert result == {"shop.t": (3, digest_of(ROWS)),
                      "shop.odd`name": (1, digest_of([b"7,'x'"])),
                      "other.t": (1, digest_of([b"9,'z'"]))}


@given(st.sampled_from([DUMP, DUMP_MULTI]),
       st.lists(st.integers(min_value=1, max_value=len(DUMP_MULTI) - 1), max_size=12))
def test_any_chunking_gives_the_same_counts(dump: bytes, cuts: list[int]) -> None:
    whole = RowDigester("shop")
    whole.feed(dump)
    chunked, last = RowDigester("shop"), 0
    for cut in sorted({min(c, len(dump)) for c in cuts}):
        chunked.feed(dump[last:cut])
        last = cut
    chunked.feed(dump[last:])
    assert chunked.finish() == whole.finish()


def test_statement_boundaries_and_order_do_not_matter() -> None:
    one, two = RowDigester("d"), RowDigester("d")
    one.feed(b"INSERT INTO `t` VALUES (1,'a'),(2,'b'),(3,'c');\n")
    two.feed(b"INSERT INTO `t` VALUES (3,'c');\nINSERT INTO `t` VALUES (2,'b'),(1,'a');\n")
    assert one.finish() == two.finish()


def test_a_last_line_without_newline_counts() -> None:
    digester = RowDigester("d")
    digester.feed(b"INSERT INTO `t` VALUES (1);")
    assert digester.finish()["d.t"].rows == 1


def test_range_parts_combine_into_the_whole_table() -> None:
    low, high, whole = RowDigester("d"), RowDigester("d"), RowDigester("d")
    low.feed(b"INSERT INTO `t` VALUES (1,'a'),(2,'b');\n")
    high.feed(b"INSERT INTO `t` VALUES (3,'c');\n")
    whole.feed(b"INSERT INTO `t` VALUES (1,'a'),(2,'b'),(3,'c');\n")
    parts = [(t, c.rows, digest_text(c.digest)) for d in (low, high)
             for t, c in d.finish().items()]
    (table, count), = whole.finish().items()
    assert combine(parts) == {table: (count.rows, digest_text(count.digest))}


@pytest.mark.parametrize(("recorded", "restored", "problems"), [
    ({"d.t": (3, "00aa")}, {"d.t": (3, "00aa")}, []),
    ({"d.t": (3, "00aa")}, {"d.t": (2, "0011")}, ["table d.t: 3 rows dumped, 2 restored"]),
    ({"d.t": (3, "00aa")}, {"d.t": (3, "00ab")},
     ["table d.t: 3 rows each side, but their digest differs (dumped 00aa, restored 00ab): "
      "rows changed"]),
    ({"d.t": (3, "00aa")}, {}, ["table d.t: 3 rows dumped, 0 restored"]),
    ({}, {"d.x": (1, "0001")}, ["table d.x: 0 rows dumped, 1 restored"]),
    ({"d.empty": (0, digest_text(0))}, {}, []),
    ({"d.a": (1, "01"), "d.b": (1, "02")}, {"d.a": (0, "00"), "d.b": (1, "02")},
     ["table d.a: 1 rows dumped, 0 restored"]),
])
def test_comparison_names_each_table_that_differs(
        recorded: dict[str, tuple[int, str]], restored: dict[str, tuple[int, str]],
        problems: list[str]) -> None:
    assert compare_tables(recorded, restored) == problems
