"""Repository format 3, the pure half: key layout, chunk lists and the prune plan.

A format 3 repository stores content-defined chunks, each once, in pack files; index
files say where each chunk is; a snapshot's manifest names, per stream, the chunks of
its *chunk list* (the stream's chunk ids, itself stored as chunks, so a manifest stays
a few hundred bytes for a terabyte stream).

    <prefix>/packs/<16 hex>/<32 hex>  pack: sealed chunks back to back, then a trailer;
                                      its id (32 hex) starts with its writer's tag (16 hex)
    <prefix>/index/<32 hex>           index: chunk id → pack, offset, length (sorted)

The writer's tag (``writer_tag``: a hash of the snapshot id, or of "prune") puts each
writer's packs in a folder of its own, so a redelivered backup step can abort the
uploads that its killed predecessor left open (as ``data/<snapshot-id>/`` allows in
formats 1 and 2) without touching a concurrent backup's.

The hard thing here is the prune plan: which packs to keep, copy (their live chunks
into new packs) or delete, so that every chunk a manifest names stays reachable at every
step of a prune that may be killed anywhere. ``plan_prune`` decides it over values;
``workers/repository/prune.py`` carries it out in the order its docstring gives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PACKS_DIR = "packs/"
INDEX_DIR = "index/"
#: Bytes of a chunk id: BLAKE3's default output (keyed in an encrypted repository).
CHUNK_ID_BYTES = 32
#: Bytes of a pack's or an index file's name.
OBJECT_ID_BYTES = 16
#: Bytes of a pack id that name its writer (the rest are random).
WRITER_TAG_BYTES = 8
#: A pack whose live chunks fill less than this fraction of it is repacked by prune (its
#: live chunks copied into a new pack, the old one deleted): restic's default
#: ``--max-unused 5 %`` keeps more garbage; 0.5 bounds the garbage to half a pack per
#: pack while copying at most as much as it frees.
MIN_USED_FRACTION = 0.5


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class ChunkList(_Wire):
    """Where a format 3 stream's chunk ids are: the stream's chunk ids (32 bytes each,
    in order) concatenated form the *list*, which is stored as chunks too."""

    ids: tuple[str, ...]              #: hex ids of the list's own chunks, in order
    count: int = Field(ge=0)          #: chunks of the stream (list bytes / 32)


class Chunker(_Wire):
    """How a format 3 repository cuts streams: fixed at creation, since chunks dedupe
    only against chunks cut the same way."""

    algorithm: str = "fastcdc-2020"
    min_bytes: int = Field(ge=64)
    avg_bytes: int = Field(ge=256)
    max_bytes: int = Field(ge=1024)


@dataclass(frozen=True)
class Location:
    """Where one sealed chunk lies: ``length`` stored bytes at ``offset`` of a pack."""

    pack: bytes
    offset: int
    length: int
    raw_length: int


@dataclass(frozen=True)
class PrunePlan:
    """What a prune does. ``copy``: live chunk id → its location in a pack being
    repacked; ``keep``: packs left as they are; ``delete``: packs to delete once the
    index no longer names them (repacked ones included); ``missing``: live chunks found
    in no index (the prune must not delete anything then)."""

    keep: frozenset[bytes]
    copy: Mapping[bytes, Location]
    delete: frozenset[bytes]
    missing: frozenset[bytes] = frozenset()
    live_bytes: int = 0
    freed_bytes: int = 0


@dataclass
class _Pack:
    size_bytes: int
    owned: dict[bytes, Location] = field(default_factory=dict)

    @property
    def used_bytes(self) -> int:
        return sum(loc.length for loc in self.owned.values())


def writer_tag(writer: str) -> bytes:
    """The first bytes of the ids of the packs ``writer`` (a snapshot id) writes."""
    return hashlib.blake2b(writer.encode(), digest_size=WRITER_TAG_BYTES).digest()


def writer_dir(writer: str) -> str:
    """Where ``writer``'s packs are: what a retry of its backup cleans up."""
    return f"{PACKS_DIR}{writer_tag(writer).hex()}/"


def pack_key(pack: bytes) -> str:
    name = pack.hex()
    return f"{PACKS_DIR}{name[:2 * WRITER_TAG_BYTES]}/{name}"


def index_key(index: bytes) -> str:
    return f"{INDEX_DIR}{index.hex()}"


def pack_of_key(key: str) -> bytes | None:
    """The pack id of ``packs/<tag>/<hex>``, or None for any other key."""
    head, _, name = key.removeprefix(PACKS_DIR).partition("/")
    tagged = name[:2 * WRITER_TAG_BYTES] == head
    return _hex_id(name) if key.startswith(PACKS_DIR) and tagged else None


def index_of_key(key: str) -> bytes | None:
    """The index id of ``index/<hex>``, or None for any other key."""
    return _hex_id(key.removeprefix(INDEX_DIR)) if key.startswith(INDEX_DIR) else None


def _hex_id(name: str) -> bytes | None:
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return raw if len(raw) == OBJECT_ID_BYTES and raw.hex() == name else None


def split_ids(data: bytes) -> list[bytes]:
    """A chunk list's bytes → its chunk ids; ``ValueError`` unless whole ids."""
    if len(data) % CHUNK_ID_BYTES:
        raise ValueError(f"a chunk list of {len(data)} bytes is not whole "
                         f"{CHUNK_ID_BYTES}-byte ids")
    return [data[i:i + CHUNK_ID_BYTES] for i in range(0, len(data), CHUNK_ID_BYTES)]


def plan_prune(packs: Mapping[bytes, int], entries: Iterable[tuple[bytes, Location]],
               live: Iterable[bytes], *,
               min_used_fraction: float = MIN_USED_FRACTION) -> PrunePlan:
    """Decide a prune over values. ``packs``: every pack listed, with its size;
    ``entries``: every index entry (a chunk may appear in several packs: two writers
    stored it, or an earlier prune was cut short); ``live``: every chunk id a manifest
    names. Each live chunk is owned by one location, in the pack with the most live
    bytes, so duplicates go with the rest of the garbage."""
    located: dict[bytes, list[Location]] = {}
    for chunk, loc in entries:
        if loc.pack in packs:  # an entry naming a missing pack is check's to report
            located.setdefault(chunk, []).append(loc)
    live_ids = set(live)
    table = {pack: _Pack(size) for pack, size in packs.items()}
    gross = {pack: 0 for pack in packs}
    for chunk in live_ids:
        for loc in located.get(chunk, ()):
            gross[loc.pack] += loc.length
    for chunk in live_ids:
        if chunk in located:
            best = max(located[chunk], key=lambda loc: (gross[loc.pack], loc.pack))
            table[best.pack].owned[chunk] = best
    keep, copy, delete = set(), {}, set()
    for pack, state in table.items():
        used = state.used_bytes
        if used and used >= min_used_fraction * state.size_bytes:
            keep.add(pack)
            continue
        copy.update(state.owned)
        delete.add(pack)
    live_bytes = sum(t.used_bytes for t in table.values())
    return PrunePlan(keep=frozenset(keep), copy=copy, delete=frozenset(delete),
                     missing=frozenset(live_ids - located.keys()), live_bytes=live_bytes,
                     freed_bytes=sum(packs[p] for p in delete) - sum(
                         loc.length for loc in copy.values()))
