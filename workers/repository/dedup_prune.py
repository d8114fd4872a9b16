"""Prune of a format 3 repository: mark and sweep, under the exclusive lock.

Mark: every chunk a manifest names (its streams' chunk lists and their chunks). Sweep:
``workflows.packs.plan_prune`` keeps packs mostly live, copies the live chunks of
sparse ones (sealed bytes as they are, verified first) into new packs, and deletes the
rest. The order makes a prune killed at any point harmless — every index entry always
points into an existing pack, and every live chunk is always in an index:

1. upload the new packs (killed here: packs no index names, orphans);
2. write new index files for every kept and new pack (killed here: some chunks have
   two entries, both valid, since no pack was deleted yet);
3. delete the old index files (killed here: the remaining old ones still point to
   packs that exist);
4. delete the packs no longer indexed (killed here: orphans, for the next prune).

Nothing is deleted if a manifest or index cannot be read, or a live chunk is in no
index or fails verification on copy: that is check's to report, and a prune must
not make it worse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from workers.repository.chunks import ChunkCodec
from workers.repository.dedup import ChunkReader, read_list
from workers.repository.index import FILE_ENTRIES, ChunkIndex, index_keys, read_index, write_index
from workers.repository.manifests import load_snapshot, snapshot_ids
from workers.repository.packs import PackWriter, new_object_id
from workers.repository.streams import Cipher
from workers.storage.base import Storage
from workflows.errors import IntegrityError
from workflows.packs import (
    MIN_USED_FRACTION,
    PACKS_DIR,
    Location,
    PrunePlan,
    pack_key,
    pack_of_key,
    plan_prune,
)

log = logging.getLogger(__name__)

LeaseCheck = Callable[[], None]
#: The packs prune writes go in this writer's folder.
PRUNE_WRITER = "prune"


def prune_format3(storage: Storage, cipher: Cipher, codec: ChunkCodec, check: LeaseCheck, *,
                  min_used_fraction: float = MIN_USED_FRACTION) -> int:
    """Mark, plan and sweep (see the module's doc); return how many objects were deleted."""
    packs = {pack: size for key, size in storage.list(PACKS_DIR)
             if (pack := pack_of_key(key)) is not None}
    old_indexes = index_keys(storage)
    entries = [e for key in old_indexes for e in read_index(storage, cipher, key)]
    index = ChunkIndex()
    index.add(entries)
    live = _mark(storage, cipher, ChunkReader(storage, codec, index))
    plan = plan_prune(packs, entries, live, min_used_fraction=min_used_fraction)
    if plan.missing:
        raise IntegrityError(f"{len(plan.missing)} chunk(s) that snapshots use are in no "
                             f"index (the first {min(plan.missing).hex()}): prune deletes "
                             "nothing; run stashq check")
    if not plan.delete:
        log.info("prune: nothing to delete (%d pack(s) kept)", len(plan.keep))
        return 0
    copied = _copy(storage, codec, plan, check)
    kept = {(c, loc) for c, loc in entries if loc.pack in plan.keep}
    check()
    _write_indexes(storage, cipher, sorted(kept, key=lambda e: e[0]) + copied)
    for key in old_indexes:
        check()
        storage.delete(key)
    for pack in sorted(plan.delete):
        check()
        storage.delete(pack_key(pack))
    log.info("prune: %d pack(s) kept, %d deleted, %d live chunk(s) copied, %d bytes freed",
             len(plan.keep), len(plan.delete), len(plan.copy), plan.freed_bytes)
    return len(old_indexes) + len(plan.delete)


def _mark(storage: Storage, cipher: Cipher, reader: ChunkReader) -> set[bytes]:
    """Every chunk id a manifest names; ``IntegrityError`` if one cannot be read."""
    live: set[bytes] = set()
    for snapshot_id in snapshot_ids(storage):
        snapshot = load_snapshot(storage, cipher, snapshot_id)
        for stream in snapshot.streams:
            what = f'snapshot "{snapshot_id}" stream {stream.name}'
            live.update(read_list(reader, stream, what))
            assert stream.chunks is not None  # read_list said so
            live.update(bytes.fromhex(h) for h in stream.chunks.ids)
    return live


def _copy(storage: Storage, codec: ChunkCodec, plan: PrunePlan,
          check: LeaseCheck) -> list[tuple[bytes, Location]]:
    """The live chunks of packs to be deleted, verified and copied into new packs."""
    writer = PackWriter(storage, PRUNE_WRITER, codec.cipher)
    try:
        for chunk, loc in sorted(plan.copy.items(), key=lambda e: (e[1].pack, e[1].offset)):
            key = pack_key(loc.pack)
            sealed = storage.get_range(key, loc.offset, loc.length)
            try:
                codec.open(chunk, sealed, loc.raw_length)
            except IntegrityError as e:
                raise IntegrityError(f'pack "{key}": chunk {chunk.hex()} is bad ({e}): prune '
                                     "deletes nothing; run stashq check --read-data") from e
            check()
            writer.add(chunk, sealed, loc.raw_length)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _write_indexes(storage: Storage, cipher: Cipher,
                   entries: list[tuple[bytes, Location]]) -> None:
    for start in range(0, len(entries), FILE_ENTRIES):
        write_index(storage, cipher, new_object_id(), entries[start:start + FILE_ENTRIES])
