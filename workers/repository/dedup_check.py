"""``stashq check`` of a format 3 repository: index ↔ packs ↔ manifests.

Without ``read_data``: every index file is whole; every entry lies inside a pack that
exists; every manifest opens, its chunk lists read back and match, and every chunk they
name is in an index. Packs no index names and chunks no snapshot names are orphans
(garbage for prune, not problems). With ``read_data``: every chunk of every pack is
read, authenticated (encrypted) and re-hashed, each pack's trailer is compared with the
index, and a bad chunk is reported with its pack and the snapshots it breaks.

Read-only. Memory: the entries of every index (as values, ~200 bytes a chunk) and the
chunk ids of every snapshot (32 bytes a chunk): check is a command, not a worker step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from workers.repository.check import CheckReport
from workers.repository.chunks import ChunkCodec
from workers.repository.dedup import ChunkReader, list_chunk_ids, read_list
from workers.repository.index import ChunkIndex, index_keys, read_index
from workers.repository.manifests import load_snapshot, snapshot_ids
from workers.repository.packs import TAIL, read_trailer
from workers.repository.streams import Cipher
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound
from workflows.packs import PACKS_DIR, Location, pack_key, pack_of_key, split_ids

#: Problems of one kind named one by one before the rest are only counted.
MAX_NAMED = 20


@dataclass
class _Indexed:
    """What the index files say, checked against the pack listing."""

    entries: list[tuple[bytes, Location]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_format3(storage: Storage, cipher: Cipher, codec: ChunkCodec, *,
                  read_data: bool = False) -> CheckReport:
    report = CheckReport(format_version=3)
    packs = {pack: size for key, size in storage.list(PACKS_DIR)
             if (pack := pack_of_key(key)) is not None}
    indexed = _read_indexes(storage, cipher, packs)
    report.problems += indexed.problems
    index = ChunkIndex()
    index.add(indexed.entries)
    reader = ChunkReader(storage, codec, index)
    lists = _check_manifests(storage, cipher, reader, report)
    live = {c for ids in lists.values() for c in split_ids(ids)}
    used_packs = {loc.pack for _, loc in indexed.entries}
    report.orphans = [f"{pack_key(p)}: in no index" for p in sorted(packs.keys() - used_packs)]
    dead = {c for c, _ in indexed.entries} - live
    if dead:
        report.orphans.append(f"{len(dead)} chunk(s) no snapshot uses (prune removes them, "
                              "or keeps them in packs mostly in use)")
    if read_data:
        bad = _read_packs(storage, codec, indexed.entries, packs, report)
        report.problems += [f"{problem}; it breaks {_users(chunk, lists)}"
                            for chunk, problem in bad]
    return report


def _read_indexes(storage: Storage, cipher: Cipher, packs: dict[bytes, int]) -> _Indexed:
    found = _Indexed()
    for key in index_keys(storage):
        try:
            entries = read_index(storage, cipher, key)
        except (IntegrityError, NotFound) as e:
            found.problems.append(str(e))
            continue
        for chunk, loc in entries:
            problem = _entry_problem(key, chunk, loc, packs)
            if problem is None:
                found.entries.append((chunk, loc))
            elif problem not in found.problems:
                found.problems.append(problem)
    return found


def _entry_problem(key: str, chunk: bytes, loc: Location, packs: dict[bytes, int]) -> str | None:
    if loc.pack not in packs:
        return f'index "{key}" names pack "{pack_key(loc.pack)}", which is missing'
    end, size = loc.offset + loc.length, packs[loc.pack]
    if end > size - TAIL.size:
        return (f'index "{key}": chunk {chunk.hex()} at bytes {loc.offset}-{end} lies past '
                f'the end of pack "{pack_key(loc.pack)}" ({size} bytes)')
    return None


def _check_manifests(storage: Storage, cipher: Cipher, reader: ChunkReader,
                     report: CheckReport) -> dict[str, bytes]:
    """Each snapshot's chunk ids (its streams' and their lists'), as one bytes string."""
    lists: dict[str, bytes] = {}
    for snapshot_id in sorted(snapshot_ids(storage)):
        report.snapshots += 1
        try:
            snapshot = load_snapshot(storage, cipher, snapshot_id)
        except (IntegrityError, NotFound) as e:
            report.problems.append(str(e))
            continue
        ids = bytearray()
        for stream in snapshot.streams:
            report.streams += 1
            what = f'snapshot "{snapshot_id}" stream {stream.name}'
            try:
                ids += b"".join(list_chunk_ids(stream, what))
                chunks = read_list(reader, stream, what)
            except IntegrityError as e:
                report.problems.append(str(e))
                continue
            ids += b"".join(chunks)
            missing = [c for c in chunks if reader.index.lookup(c) is None]
            if missing:
                report.problems.append(f"{what}: {len(missing)} chunk(s) in no index, the "
                                       f"first {missing[0].hex()}")
        lists[snapshot_id] = bytes(ids)
    return lists


def _read_packs(storage: Storage, codec: ChunkCodec, entries: Iterable[tuple[bytes, Location]],
                packs: dict[bytes, int], report: CheckReport) -> list[tuple[bytes, str]]:
    """Every indexed chunk read and verified, pack by pack: (chunk, problem) of bad ones."""
    by_pack: dict[bytes, dict[int, tuple[bytes, Location]]] = {}
    for chunk, loc in entries:
        by_pack.setdefault(loc.pack, {})[loc.offset] = (chunk, loc)
    bad: list[tuple[bytes, str]] = []
    for pack, located in sorted(by_pack.items()):
        key = pack_key(pack)
        try:
            trailer = read_trailer(storage, key, packs[pack], codec.cipher)
        except (IntegrityError, NotFound) as e:
            report.problems.append(str(e))
            trailer = []
        _compare_trailer(key, trailer, located, report)
        for offset in sorted(located):
            chunk, loc = located[offset]
            try:
                sealed = storage.get_range(key, loc.offset, loc.length)
                report.bytes_read += len(sealed)
                codec.open(chunk, sealed, loc.raw_length)
            except (IntegrityError, NotFound) as e:
                bad.append((chunk, f'pack "{key}": chunk {chunk.hex()} at byte {offset} '
                                   f"is bad: {e}"))
    return bad


def _compare_trailer(key: str, trailer: list[tuple[bytes, int, int]],
                     located: dict[int, tuple[bytes, Location]], report: CheckReport) -> None:
    listed, offset = {}, 0
    for chunk, length, raw in trailer:
        listed[offset] = (chunk, length, raw)
        offset += length
    if not trailer:
        return
    differ = [o for o, (c, loc) in located.items()
              if listed.get(o) != (c, loc.length, loc.raw_length)]
    if differ:
        report.problems.append(f'pack "{key}": {len(differ)} index entr(y/ies) disagree with '
                               f"the pack's own trailer, the first at byte {min(differ)}")


def _users(chunk: bytes, lists: dict[str, bytes]) -> str:
    users = [s for s, ids in lists.items() if chunk in split_ids(ids)]
    if not users:
        return "no snapshot (it is garbage)"
    named = ", ".join(f'"{s}"' for s in users[:MAX_NAMED])
    return f"snapshot(s) {named}" + (f" and {len(users) - MAX_NAMED} more"
                                     if len(users) > MAX_NAMED else "")
