"""How a parallel logical dump divides its tables among its dump clients.

Every client of a parallel dump is started inside one short window in which commits
are blocked, so that all of them read the same moment (``workers/shared_snapshot.py``).
The number of clients is therefore fixed before any row is read, and the plan fills at
most that many parts, balanced by size: a table larger than a fair share (total /
parallel) is first cut into ranges of its integer primary key, one part per range;
the other tables are packed whole, largest first, onto the least loaded part.

A range cannot share a part with other tables: a client takes one ``--where``, which
applies to every table it reads. The ranges of a table cover every key, the first open
below and the last open above, so rows written after the sizes were read still belong
to exactly one range (the sizes and key bounds are estimates; coverage is not).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: More dump clients than this is a typo: each is a connection, a process and a stream.
MAX_PARALLEL = 16


@dataclass(frozen=True)
class TableSize:
    """A table (or sequence) to dump, as information_schema describes it."""

    database: str
    name: str
    data_bytes: int = 0        #: information_schema.TABLES.DATA_LENGTH (an estimate)
    key: str | None = None     #: its primary key, if that is one integer column

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.name}"


@dataclass(frozen=True)
class KeyRange:
    """``low <= key < high`` on an integer column; None is open on that side."""

    column: str
    low: int | None = None
    high: int | None = None

    def where(self) -> str:
        """The condition for ``--where``: integers only, the column quoted."""
        column = "`" + self.column.replace("`", "``") + "`"
        bounds = ([f"{column} >= {self.low}"] if self.low is not None else []) + \
                 ([f"{column} < {self.high}"] if self.high is not None else [])
        return " AND ".join(bounds) or "1=1"


@dataclass(frozen=True)
class DumpPart:
    """What one dump client reads: whole tables, or one key range of one table."""

    tables: tuple[TableSize, ...]
    key_range: KeyRange | None = None
    estimated_bytes: int = 0


def split_candidates(tables: Sequence[TableSize], parallel: int) -> list[TableSize]:
    """Tables worth cutting into key ranges: larger than a fair share, with an integer key.

    Their key bounds are what ``plan_parts`` needs to cut them (one cheap MIN/MAX each).
    """
    total = sum(t.data_bytes for t in tables)
    return [t for t in tables
            if t.key is not None and parallel > 1 and t.data_bytes * parallel > total]


def plan_parts(tables: Sequence[TableSize], parallel: int,
               bounds: Mapping[str, tuple[int, int]]) -> list[DumpPart]:
    """At most ``parallel`` non-empty parts that together cover every table once.

    ``bounds`` maps a table's qualified name to its key's (MIN, MAX); a table missing
    from it is never cut.
    """
    ordered = sorted(tables, key=lambda t: (-t.data_bytes, t.database, t.name))
    total = sum(t.data_bytes for t in ordered) or 1
    parts: list[DumpPart] = []
    whole: list[TableSize] = []
    slots = parallel
    for index, table in enumerate(ordered):
        others = bool(whole) or index + 1 < len(ordered)
        pieces = min(round(table.data_bytes * parallel / total), slots - (1 if others else 0))
        ranges = _key_ranges(table, bounds.get(table.qualified), pieces)
        if len(ranges) < 2:
            whole.append(table)
            continue
        parts += [DumpPart((table,), r, table.data_bytes // len(ranges)) for r in ranges]
        slots -= len(ranges)
    return parts + _pack(whole, slots)


def _key_ranges(table: TableSize, bounds: tuple[int, int] | None,
                pieces: int) -> list[KeyRange]:
    """``pieces`` ranges of about equal key width covering every integer (or none)."""
    if table.key is None or bounds is None or pieces < 2:
        return []
    low, high = bounds
    pieces = min(pieces, high - low + 1)
    if pieces < 2:
        return []
    cuts = [low + (high - low + 1) * i // pieces for i in range(1, pieces)]
    edges: list[int | None] = [None, *cuts, None]
    return [KeyRange(table.key, edges[i], edges[i + 1]) for i in range(pieces)]


def _pack(tables: Sequence[TableSize], slots: int) -> list[DumpPart]:
    """Largest first onto the least loaded of ``slots`` parts (LPT); no empty part."""
    count = min(slots, len(tables))
    if count <= 0:
        return []
    loads = [(0, 0, i) for i in range(count)]  # (bytes, tables, part): empty parts first
    members: list[list[TableSize]] = [[] for _ in range(count)]
    for table in tables:  # already largest first
        load, n, i = heapq.heappop(loads)
        members[i].append(table)
        heapq.heappush(loads, (load + table.data_bytes, n + 1, i))
    return [DumpPart(tuple(m), None, sum(t.data_bytes for t in m)) for m in members]
