"""Format 3's pure half: key names, chunk lists, and the prune plan, whose property is
that every live chunk stays reachable (kept where it is, or copied) and nothing dead is
kept for its sake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.packs import (
    CHUNK_ID_BYTES,
    Location,
    index_key,
    index_of_key,
    pack_key,
    pack_of_key,
    plan_prune,
    split_ids,
    writer_dir,
    writer_tag,
)

PACK_A, PACK_B, PACK_C = (bytes([n]) * 16 for n in (1, 2, 3))


def chunk(n: int) -> bytes:
    return n.to_bytes(CHUNK_ID_BYTES, "big")


def test_keys_round_trip_and_other_keys_are_not_packs() -> None:
    assert pack_key(PACK_A) == "packs/" + "01" * 8 + "/" + "01" * 16
    assert pack_of_key(pack_key(PACK_A)) == PACK_A
    assert index_of_key(index_key(PACK_B)) == PACK_B
    for key in ("packs/" + "02" * 8 + "/" + "01" * 16, "packs/01/" + "01" * 16,
                "packs/" + "01" * 8 + "/" + "01" * 15, "data/x/dump.sql.zst",
                "packs/" + "01" * 8 + "/" + "01" * 16 + ".tmp-1", "index/xyz"):
        assert pack_of_key(key) is None and index_of_key(key) is None


def test_each_writer_has_a_folder_of_its_own() -> None:
    assert writer_dir("nightly-1") == f"packs/{writer_tag('nightly-1').hex()}/"
    assert writer_tag("nightly-1") != writer_tag("nightly-2")
    assert len(writer_tag("x")) == 8


def test_a_chunk_list_splits_into_whole_ids_only() -> None:
    assert split_ids(chunk(1) + chunk(2)) == [chunk(1), chunk(2)]
    with pytest.raises(ValueError, match="not whole"):
        split_ids(chunk(1)[:-1])


def test_a_pack_with_nothing_live_goes_a_mostly_live_one_stays_a_sparse_one_is_copied() -> None:
    entries = [(chunk(1), Location(PACK_A, 0, 100, 300)),
               (chunk(2), Location(PACK_B, 0, 90, 300)), (chunk(3), Location(PACK_B, 90, 10, 30)),
               (chunk(4), Location(PACK_C, 0, 10, 30)), (chunk(5), Location(PACK_C, 10, 90, 300))]
    plan = plan_prune({PACK_A: 100, PACK_B: 100, PACK_C: 100}, entries,
                      [chunk(2), chunk(4)])
    assert plan.keep == {PACK_B}
    assert plan.copy == {chunk(4): Location(PACK_C, 0, 10, 30)}
    assert plan.delete == {PACK_A, PACK_C}
    assert plan.missing == frozenset()
    assert plan.freed_bytes == 200 - 10


def test_a_live_chunk_in_no_index_is_reported_missing() -> None:
    plan = plan_prune({PACK_A: 10}, [(chunk(1), Location(PACK_A, 0, 10, 10))],
                      [chunk(1), chunk(9)])
    assert plan.missing == {chunk(9)}


def test_a_duplicate_stored_by_two_writers_is_kept_once() -> None:
    entries = [(chunk(1), Location(PACK_A, 0, 50, 50)), (chunk(2), Location(PACK_A, 50, 50, 50)),
               (chunk(2), Location(PACK_B, 0, 50, 50)), (chunk(3), Location(PACK_B, 50, 50, 50))]
    plan = plan_prune({PACK_A: 100, PACK_B: 100}, entries, [chunk(1), chunk(2)])
    assert plan.keep == {PACK_A} and plan.delete == {PACK_B} and not plan.copy


packs_st = st.lists(st.sampled_from([PACK_A, PACK_B, PACK_C]), min_size=0, max_size=3,
                    unique=True)


@st.composite
def repositories(draw: st.DrawFn) -> tuple[dict[bytes, int], list[tuple[bytes, Location]],
                                           set[bytes]]:
    packs = draw(packs_st)
    entries, sizes = [], {}
    for pack in packs:
        offset = 0
        for n in draw(st.lists(st.integers(0, 12), max_size=6)):
            length = draw(st.integers(1, 50))
            entries.append((chunk(n), Location(pack, offset, length, length)))
            offset += length
        sizes[pack] = offset + draw(st.integers(0, 20))  # a trailer
    live = set(draw(st.lists(st.integers(0, 14).map(chunk), max_size=10)))
    return sizes, entries, live


@given(repositories(), st.floats(0.0, 1.0))
def test_prune_keeps_everything_live_and_nothing_only_dead(
        repo: tuple[dict[bytes, int], list[tuple[bytes, Location]], set[bytes]],
        threshold: float) -> None:
    sizes, entries, live = repo
    plan = plan_prune(sizes, entries, live, min_used_fraction=threshold)
    indexed = {c for c, _ in entries}
    assert plan.missing == live - indexed
    assert plan.keep | plan.delete == set(sizes) and not plan.keep & plan.delete
    for c in live & indexed:  # reachable after the prune: in a kept pack, or copied
        assert c in plan.copy or any(loc.pack in plan.keep for cc, loc in entries if cc == c)
    assert set(plan.copy) <= live
    assert all(loc.pack in plan.delete for loc in plan.copy.values())
    for pack in plan.keep:  # a kept pack holds something live
        assert any(loc.pack == pack and c in live for c, loc in entries)
