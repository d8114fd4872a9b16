"""Snapshots in a repository: list and read manifests, resolve ``latest``, stats.

A snapshot is listed only when its manifest exists; the manifest is written after
all of its streams, so a failed or interrupted backup is never a snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

from workers.storage.base import Storage
from workers.streaming import StreamStats, compress, decompress, prefetch, with_progress
from workflows.errors import IntegrityError, NotFound
from workflows.snapshots import (
    CONFIG_KEY,
    FORMAT_VERSION,
    SNAPSHOTS_DIR,
    Snapshot,
    Stream,
    manifest_key,
    snapshot_id_of,
)

Report = Callable[[StreamStats], None]


def write_stream(storage: Storage, key: str, name: str, raw: Iterable[bytes], *, level: int,
                 report: Report | None = None,
                 check_end: Report | None = None) -> Stream:
    """Compress, hash and store ``raw`` under ``key``, the one way data is written.

    ``raw`` is read ahead in a thread. ``check_end(stats)`` runs after the last chunk and
    before the object is completed: raising there (a truncated dump, say) aborts the
    upload, so nothing is stored.
    """
    stats = StreamStats()
    chunks: Iterable[bytes] = compress(prefetch(raw), stats, level)
    if check_end is not None:
        chunks = _then(chunks, lambda: check_end(stats))
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    storage.put_stream(key, chunks)
    return Stream(name=name, key=key, size_bytes=stats.stored_bytes, raw_bytes=stats.raw_bytes,
                  sha256=stats.digest)


def read_stream(storage: Storage, snapshot_id: str, stream: Stream,
                report: Report | None = None) -> Iterator[bytes]:
    """The stream's original bytes, the one way data is read back.

    zstd's frame checksum stops corrupt data as it streams; the size and sha256 of the
    stored bytes are checked after the last chunk, before this iterator ends, so a
    consumer that stops at the error (the SQL client is killed, its input never closed)
    never sees a clean end of a corrupt stream.
    """
    stats = StreamStats()
    chunks: Iterable[bytes] = decompress(prefetch(storage.get_stream(stream.key)), stats)
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    where = f'snapshot "{snapshot_id}" stream {stream.name} is corrupt'
    try:
        yield from chunks
    except IntegrityError as e:
        raise IntegrityError(f"{where}: {e}") from e
    if stats.stored_bytes != stream.size_bytes or stats.digest != stream.sha256:
        raise IntegrityError(f"{where}: expected {stream.size_bytes} bytes with sha256 "
                             f"{stream.sha256[:16]}…, read {stats.stored_bytes} bytes with "
                             f"{stats.digest[:16]}…")


def _then(chunks: Iterable[bytes], finish: Callable[[], None]) -> Iterator[bytes]:
    yield from chunks
    finish()


def read_all(storage: Storage, chunks_key: str) -> bytes:
    """Read a small object (a manifest or config) whole."""
    return b"".join(storage.get_stream(chunks_key))


def load_snapshot(storage: Storage, snapshot_id: str) -> Snapshot:
    data = read_all(storage, manifest_key(snapshot_id))
    try:
        return Snapshot.from_json(data)
    except ValueError as e:
        raise IntegrityError(f'manifest of snapshot "{snapshot_id}" is unreadable: {e}') from e


def find_snapshot(storage: Storage, snapshot_id: str) -> Snapshot | None:
    try:
        return load_snapshot(storage, snapshot_id)
    except NotFound:
        return None


def list_snapshots(storage: Storage) -> list[Snapshot]:
    """Every snapshot, oldest first."""
    ids = [sid for key, _ in storage.list(SNAPSHOTS_DIR) if (sid := snapshot_id_of(key))]
    return sorted((load_snapshot(storage, sid) for sid in ids), key=lambda s: s.finished_at)


def resolve_snapshot(storage: Storage, repository: str, wanted: str) -> Snapshot:
    """``latest`` or an id → the snapshot; ``NotFound`` names repository and id."""
    if wanted == "latest":
        snapshots = list_snapshots(storage)
        if not snapshots:
            raise NotFound(f'Repository "{repository}" has no snapshots')
        return snapshots[-1]
    snapshot = find_snapshot(storage, wanted)
    if snapshot is None:
        raise NotFound(f'snapshot "{wanted}" not found in Repository "{repository}"')
    return snapshot


def write_snapshot(storage: Storage, snapshot: Snapshot) -> None:
    storage.put_stream(manifest_key(snapshot.id), [snapshot.to_json()])


def ensure_config(storage: Storage) -> None:
    """Write ``config.json`` on first use; refuse a repository of a newer format."""
    try:
        config = json.loads(read_all(storage, CONFIG_KEY))
    except NotFound:
        storage.put_stream(CONFIG_KEY, [json.dumps({"formatVersion": FORMAT_VERSION}).encode()])
        return
    if int(config.get("formatVersion", 0)) > FORMAT_VERSION:
        raise IntegrityError(f"repository format {config['formatVersion']} is newer than this "
                             f"StashQ understands ({FORMAT_VERSION}); upgrade StashQ")


def repository_stats(snapshots: Iterable[Snapshot]) -> dict[str, object]:
    items = list(snapshots)
    stats: dict[str, object] = {"snapshotCount": len(items),
                                "totalSizeBytes": sum(s.size_bytes for s in items)}
    if items:
        stats["firstBackupTime"] = _iso(items[0])
        stats["lastBackupTime"] = _iso(items[-1])
    return stats


def _iso(snapshot: Snapshot) -> str:
    return snapshot.finished_at.isoformat(timespec="seconds").replace("+00:00", "Z")
