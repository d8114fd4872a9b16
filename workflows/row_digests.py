"""Each table's row count and row digest, read from a logical dump as it streams by.

What a restore drill checks a restored snapshot against, recorded by the backup at no
cost to the source server: the dump client's output is parsed as it passes to the
repository. mariadb-dump and mysqldump write a table's rows as ``INSERT INTO `t` VALUES
(...),(...);`` lines, or (mariadb-dump from 10.11 on) ``INSERT INTO `t` VALUES`` and then a row per
line; a raw newline never appears inside a row (strings escape it), and a
multi-database dump switches with ``USE `db`;``.

The digest of a table is the sum, modulo 2**64, of the CRC-32 of each row's text as
dumped (between its parentheses). A sum does not depend on the order of the rows or on
how they are cut into statements or lines, so the digests of a table dumped in key ranges by
several clients (a parallel dump) add up to the digest of the whole table, and a drill
can compute the same value by dumping the restored table again with the same client
options. One-line statements are split into rows at ``),(``: exact unless a value holds
that text, which then counts as one row more, the same way on both sides
(CRC-32 is a check against loss and damage, not against tampering: the stored stream's
sha256 and authentication are that).

Pure: bytes in, values out.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

#: Digests are sums modulo this.
DIGEST_MODULUS = 2**64
#: The head of an INSERT line: table name (backticks doubled inside), optional columns.
INSERT = re.compile(rb"(?:INSERT|REPLACE)(?: IGNORE)? INTO `((?:[^`]|``)+)`"
                    rb"(?: \([^)]*\))? VALUES")
USE = re.compile(rb"USE `((?:[^`]|``)+)`;")
#: Where a dump switches database or writes rows (anything else is skipped at once).
INTERESTING = (b"INSERT ", b"REPLACE ", b"USE `")
STARTS = tuple(b"\n" + start for start in INTERESTING)
#: Between two rows: mysqldump writes a statement on one line, mariadb-dump (10.11 on)
#: a row per line after ``INSERT INTO `t` VALUES``.
ONE_LINE, MULTI = b"),(", b"),\n("


@dataclass
class TableCount:
    rows: int = 0
    digest: int = 0

    def add(self, rows: int, digest: int) -> None:
        self.rows += rows
        self.digest = (self.digest + digest) % DIGEST_MODULUS


@dataclass
class RowDigester:
    """Feed it a dump's bytes in any chunks; ``tables`` holds ``"db.table"`` →
    counts. ``database``: the database of a one-database dump (it has no ``USE``).

    Statements are found with ``bytes.find`` over whole blocks of lines, and a
    statement's rows are split and checksummed in C (``split``, ``map(zlib.crc32)``):
    Python runs once per statement, not per row or line. Memory holds one chunk and the
    line that goes on past it."""

    database: str = ""
    tables: dict[str, TableCount] = field(default_factory=dict)
    #: The start of a line that goes on in the next chunk (pieces, joined once its end
    #: comes: a one-line statement is ~1 MiB, many chunks).
    _open: list[bytes] = field(default_factory=list)
    #: Inside a statement that writes a row per line: its table (None: outside one).
    _table: str | None = None

    def feed(self, chunk: bytes) -> None:
        end = chunk.rfind(b"\n")
        if end < 0:
            self._open.append(chunk)
            return
        pos = 0
        if self._open:  # the line left open ends at this chunk's first newline
            first = chunk.find(b"\n") + 1
            self._block(b"".join([*self._open, chunk[:first]]), 0, None)
            pos = first
        self._open = [chunk[end + 1:]]
        self._block(chunk, pos, end + 1)  # in place: the chunk is not copied

    def finish(self) -> dict[str, TableCount]:
        """The counts, once the last chunk is fed (a last line without newline too)."""
        last = b"".join(self._open)
        self._open = []
        if last:
            self._block(last + b"\n", 0, None)
        return self.tables

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` through unchanged, feeding each on the way."""
        for chunk in chunks:
            self.feed(chunk)
            yield chunk
        self.finish()

    def _block(self, data: bytes, pos: int, stop: int | None) -> None:
        """The whole lines of ``data[pos:stop]`` (it ends with a newline; None: at the
        end of ``data``)."""
        stop = len(data) if stop is None else stop
        while pos < stop:
            if self._table is not None:  # rows, one per line, until ");"
                end = data.find(b");\n", pos, stop)
                self._rows(self._table, data, pos, stop if end < 0 else end + 1, MULTI)
                if end < 0:
                    return
                self._table, pos = None, end + 3
                continue
            start = _next_line(data, pos, stop)
            if start < 0:
                return
            pos = data.index(b"\n", start, stop) + 1
            self._line(data[start:pos - 1])

    def _line(self, line: bytes) -> None:
        if line.startswith(b"USE `"):
            used = USE.match(line)
            if used:
                self.database = _name(used.group(1))
            return
        head = INSERT.match(line)
        if head is None:
            return
        table = f"{self.database}.{_name(head.group(1))}"
        if line[head.end():].strip():  # mysqldump: every row on this line
            self._rows(table, line, head.end(), len(line), ONE_LINE)
        else:  # mariadb-dump: a row per line from the next one
            self._table = table

    def _rows(self, table: str, data: bytes, start: int, stop: int, separator: bytes) -> None:
        """``data[start:stop]``: complete rows, each in parentheses, between separators
        (found by index: the text is copied once, by the split)."""
        first, last = data.find(b"(", start, stop), data.rfind(b")", start, stop)
        if first < 0 or last <= first:
            return
        rows = data[first + 1:last].split(separator)
        self.tables.setdefault(table, TableCount()).add(len(rows), sum(map(zlib.crc32, rows)))


def _next_line(data: bytes, pos: int, stop: int) -> int:
    """Where the next line that may matter starts in ``data[pos:stop]`` (-1: none).
    Rows are INSERTs: the others are looked for only before the next INSERT, so that
    the block is scanned about once."""
    if data.startswith(INTERESTING, pos, stop):
        return pos
    insert = data.find(STARTS[0], pos, stop)
    bound = stop if insert < 0 else insert
    found = [i for mark in STARTS[1:] if (i := data.find(mark, pos, bound)) >= 0]
    if insert >= 0:
        found.append(insert)
    return min(found) + 1 if found else -1


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", "replace")


def digest_text(value: int) -> str:
    """A digest as the manifest writes it: 16 hex digits."""
    return f"{value:016x}"


def combine(parts: Iterable[tuple[str, int, str]]) -> dict[str, tuple[int, str]]:
    """``(table, rows, digest)`` of several streams → per table, their sum."""
    totals: dict[str, TableCount] = {}
    for table, rows, digest in parts:
        totals.setdefault(table, TableCount()).add(rows, int(digest, 16))
    return {t: (c.rows, digest_text(c.digest)) for t, c in totals.items()}


def compare_tables(recorded: Mapping[str, tuple[int, str]],
                   restored: Mapping[str, tuple[int, str]]) -> list[str]:
    """What differs between the rows the backup recorded and those restored, one
    sentence per table, in table order (empty: all equal). A table the backup recorded
    without rows may be absent from the restored dump (no INSERT is written for it)."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        want, got = recorded.get(table, (0, digest_text(0))), restored.get(table)
        if got is None:
            got = (0, digest_text(0))
        if want[0] != got[0]:
            problems.append(f"table {table}: {want[0]} rows dumped, {got[0]} restored")
        elif want[1] != got[1]:
            problems.append(f"table {table}: {want[0]} rows each side, but their digest "
                            f"differs (dumped {want[1]}, restored {got[1]}): rows changed")
    return problems
