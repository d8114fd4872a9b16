"""``check_bounds`` measures a value as compact JSON would be, and stops at the bound
however much the value's pieces are shared."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.hostile import nested_value, shared_bomb
from workflows.bounds import OutOfBounds, check_bounds, size_text

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="abc xyz-_.:/"),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet="abcxyz", max_size=8), children, max_size=4),
    max_leaves=30)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_size_is_that_of_compact_json_and_the_depth_that_of_its_nesting(
        value: Any) -> None:
    size, depth = len(json.dumps(value, separators=(",", ":"))), depth_of(value)
    check_bounds(value, max_bytes=size, max_depth=depth)
    with pytest.raises(OutOfBounds, match="is larger than"):
        check_bounds(value, max_bytes=size - 1, max_depth=depth)
    if depth:
        with pytest.raises(OutOfBounds, match=f"is nested more than {depth - 1} levels"):
            check_bounds(value, max_bytes=size, max_depth=depth - 1)


@pytest.mark.parametrize("value", [shared_bomb(9), shared_bomb(30, fan=2)],
                         ids=["ten-to-the-nine", "two-to-the-thirty"])
def test_shared_pieces_cost_no_more_than_the_bound(value: Any) -> None:
    start = time.monotonic()
    with pytest.raises(OutOfBounds, match="is larger than 64 KiB serialized"):
        check_bounds(value, max_bytes=64 * 2**10, max_depth=64)
    assert time.monotonic() - start < 1.0


def test_a_value_that_contains_itself_is_refused() -> None:
    value: dict[str, Any] = {}
    value["again"] = [value]
    with pytest.raises(OutOfBounds, match="is nested more than 64 levels deep"):
        check_bounds(value, max_bytes=2**20, max_depth=64)


def test_huge_integers_are_sized_without_printing_them() -> None:
    check_bounds(10**5000, max_bytes=5001, max_depth=1)
    with pytest.raises(OutOfBounds):
        check_bounds(10**5000, max_bytes=4990, max_depth=1)


def test_depth_counts_mappings_and_lists() -> None:
    check_bounds(nested_value(32), max_bytes=2**20, max_depth=32)
    with pytest.raises(OutOfBounds, match="more than 31 levels"):
        check_bounds(nested_value(32), max_bytes=2**20, max_depth=31)


def test_size_text() -> None:
    assert [size_text(n) for n in (3 * 2**20, 256 * 2**10, 1000)] == [
        "3 MiB", "256 KiB", "1000 bytes"]
