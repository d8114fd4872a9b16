"""How a parallel dump divides its tables: balanced parts, big tables cut into key
ranges that cover every key, never more parts than clients."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.parallel_plan import (
    MAX_PARALLEL,
    KeyRange,
    TableSize,
    plan_parts,
    split_candidates,
)

MIB = 2**20


def table(name: str, mib: int, key: str | None = "id", db: str = "shop") -> TableSize:
    return TableSize(db, name, mib * MIB, key)


def loads(parts: list) -> list[int]:  # type: ignore[type-arg]
    return sorted(p.estimated_bytes // MIB for p in parts)


@pytest.mark.parametrize(("sizes", "parallel", "expected"), [
    ([10] * 8, 2, [40, 40]),                 # equal tables: half each
    ([10] * 8, 4, [20, 20, 20, 20]),
    ([10] * 3, 8, [3, 3, 3, 3, 3, 3, 5, 5]),  # fewer tables than clients: all cut
    ([10] * 3, 3, [10, 10, 10]),             # as many as clients: none cut
    ([50, 30, 20], 2, [50, 50]),             # packed largest first onto the lighter part
    ([100, 10, 10], 2, [20, 100]),           # cutting the big one would leave no part for the rest
    ([100, 10, 10], 4, [20, 33, 33, 33]),    # three ranges of it, the rest together
    ([100], 4, [25, 25, 25, 25]),            # one table: four ranges
])
def test_parts_are_balanced_by_size(sizes: list[int], parallel: int,
                                    expected: list[int]) -> None:
    tables = [table(f"t{i}", mib) for i, mib in enumerate(sizes)]
    bounds = {t.qualified: (1, 1_000_000) for t in split_candidates(tables, parallel)}
    assert loads(plan_parts(tables, parallel, bounds)) == expected


def test_a_table_without_an_integer_key_is_never_cut() -> None:
    parts = plan_parts([table("log", 100, key=None), table("small", 1)], 4, {})
    assert sorted(len(p.tables) for p in parts) == [1, 1]
    assert all(p.key_range is None for p in parts)
    assert split_candidates([table("log", 100, key=None)], 4) == []


def test_ranges_are_open_at_both_ends_and_quote_the_column() -> None:
    big = TableSize("shop", "orders", 100 * MIB, "order`id")
    parts = plan_parts([big], 3, {big.qualified: (1, 300)})
    assert [p.key_range.where() for p in parts if p.key_range] == [
        "`order``id` < 101", "`order``id` >= 101 AND `order``id` < 201", "`order``id` >= 201"]


def test_a_key_span_smaller_than_the_pieces_gives_fewer_ranges() -> None:
    big = table("tiny_keys", 100)
    assert len(plan_parts([big], 4, {big.qualified: (5, 6)})) == 2
    assert len(plan_parts([big], 4, {big.qualified: (7, 7)})) == 1


def _covers(ranges: list[KeyRange], key: int) -> int:
    return sum((r.low is None or key >= r.low) and (r.high is None or key < r.high)
               for r in ranges)


@given(sizes=st.lists(st.integers(0, 1000), min_size=0, max_size=30),
       keyed=st.lists(st.booleans(), min_size=30, max_size=30),
       parallel=st.integers(1, MAX_PARALLEL),
       low=st.integers(-10**6, 10**6), span=st.integers(0, 10**6),
       probes=st.lists(st.integers(-2 * 10**6, 3 * 10**6), max_size=20))
def test_every_table_is_covered_once_by_at_most_parallel_parts(
        sizes: list[int], keyed: list[bool], parallel: int, low: int, span: int,
        probes: list[int]) -> None:
    tables = [table(f"t{i}", mib, "id" if keyed[i] else None) for i, mib in enumerate(sizes)]
    bounds = {t.qualified: (low, low + span) for t in split_candidates(tables, parallel)}
    parts = plan_parts(tables, parallel, bounds)
    assert len(parts) <= parallel and all(p.tables for p in parts)
    for t in tables:
        holding = [p for p in parts if t in p.tables]
        ranges = [p.key_range for p in holding if p.key_range is not None]
        if not ranges:
            assert len(holding) == 1  # whole, in exactly one part
            continue
        assert all(len(p.tables) == 1 for p in holding) and len(ranges) == len(holding)
        assert all(_covers(ranges, key) == 1 for key in [*probes, low, low + span])
