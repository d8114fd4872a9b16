"""Forget and prune: snapshots leave a repository manifest first, data after.

A forgotten snapshot's manifest is deleted first, so it is never listed half-deleted;
its data goes with a prune, together with any data no manifest refers to (a forget
without prune, a prune or a backup cut short). Data without a manifest may also be a
running backup's: only under the repository's exclusive lock, which backups hold
shared, is it garbage. Each deletion first checks that the lease still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from workers.repository.manifests import snapshot_ids
from workers.storage.base import Storage
from workflows.packs import INDEX_DIR, PACKS_DIR
from workflows.snapshots import DATA_DIR, manifest_key

log = logging.getLogger(__name__)

#: Raises unless the caller's lease on the repository still holds.
LeaseCheck = Callable[[], None]


def forget(storage: Storage, ids: Iterable[str], check: LeaseCheck) -> None:
    """Delete manifests: from here on these snapshots are not listed."""
    for snapshot_id in ids:
        check()
        storage.delete(manifest_key(snapshot_id))


def prune(storage: Storage, *, belongs: Callable[[str], bool], forgotten: Iterable[str],
          exclusive: bool, check: LeaseCheck) -> int:
    """Delete the data of snapshots that ``belongs`` (the caller's) and that no manifest
    refers to; return how many objects were deleted. Without the ``exclusive`` lock
    only the ``forgotten`` snapshots' data: a running backup's has no manifest yet."""
    listed, gone = set(snapshot_ids(storage)), set(forgotten)
    deleted = 0
    for key, _ in list(storage.list(DATA_DIR)):
        snapshot_id = key[len(DATA_DIR):].partition("/")[0]
        if snapshot_id in listed or not belongs(snapshot_id):
            continue
        if not exclusive and snapshot_id not in gone:
            continue
        check()
        storage.delete(key)
        deleted += 1
    return deleted


def abort_dead_uploads(storage: Storage) -> int:
    """Under the exclusive lock no backup is writing, so every open multipart upload is
    left by a backup that died with S3 unreachable (it could not abort): abort them."""
    aborted = sum(storage.cleanup_incomplete(prefix) for prefix in (DATA_DIR, PACKS_DIR,
                                                                    INDEX_DIR))
    if aborted:
        log.warning("aborted %d multipart upload(s) left open by failed backups", aborted)
    return aborted
