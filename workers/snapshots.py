"""Snapshots in a repository: write and read streams, list and read manifests, resolve
``latest``, the repository config and its cipher, stats.

A snapshot is listed only when its manifest exists; the manifest is written after
all of its streams, so a failed or interrupted backup is never a snapshot. Every byte
of an encrypted repository but ``config.json`` is encrypted here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from workers.encryption import PASSWORD_KEY, RepositoryCipher, new_encryption, open_encryption
from workers.storage.base import Storage
from workers.streaming import (
    ZSTD_THREADS,
    StreamStats,
    compress,
    count_stored,
    decompress,
    prefetch,
    with_progress,
)
from workflows.errors import IntegrityError, NotFound, PrecheckFailed
from workflows.resources.restore import LATEST
from workflows.restores import check_source, latest_snapshot
from workflows.snapshots import (
    CONFIG_KEY,
    ENCRYPTED_FORMAT_VERSION,
    SNAPSHOTS_DIR,
    RepositoryConfig,
    Snapshot,
    Stream,
    manifest_key,
    new_config,
    snapshot_id_of,
)

Report = Callable[[StreamStats], None]
#: What a repository is read and written with: None for an unencrypted one.
Cipher = RepositoryCipher | None


def write_stream(storage: Storage, cipher: Cipher, key: str, name: str, raw: Iterable[bytes], *,
                 level: int, threads: int = ZSTD_THREADS, report: Report | None = None,
                 check_end: Report | None = None) -> Stream:
    """Compress, encrypt (if ``cipher``), hash and store ``raw`` under ``key``: the one way
    data is written. The sha256 and size are of the stored bytes.

    ``raw`` is read ahead in a thread; ``threads`` are zstd's (see ``compress``).
    ``check_end(stats)`` runs after the last chunk and
    before the object is completed: raising there (a truncated dump, say) aborts the
    upload, so nothing is stored.
    """
    stats = StreamStats()
    chunks: Iterable[bytes] = compress(prefetch(raw), stats, level, threads)
    if check_end is not None:
        chunks = _then(chunks, lambda: check_end(stats))
    if cipher is not None:
        chunks = cipher.encrypt(chunks, key.encode())
    chunks = count_stored(chunks, stats)
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    storage.put_stream(key, chunks)
    return Stream(name=name, key=key, size_bytes=stats.stored_bytes, raw_bytes=stats.raw_bytes,
                  sha256=stats.digest)


def read_stream(storage: Storage, cipher: Cipher, snapshot_id: str, stream: Stream,
                report: Report | None = None) -> Iterator[bytes]:
    """The stream's original bytes, the one way data is read back.

    Encrypted, each ~1 MiB segment is authenticated before any of it reaches zstd (and
    the consumer), so nothing altered is ever yielded. Unencrypted, zstd's frame checksum
    stops corrupt data as it streams. Either way the size and sha256 of the stored bytes
    are checked after the last chunk, before this iterator ends, so a consumer that stops
    at the error (the SQL client is killed, its input never closed) never sees a clean
    end of a corrupt stream.
    """
    stats = StreamStats()
    stored: Iterable[bytes] = count_stored(storage.get_stream(stream.key), stats)
    if cipher is not None:
        stored = cipher.decrypt(stored, stream.key.encode())
    chunks: Iterable[bytes] = decompress(prefetch(stored), stats)
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


def load_snapshot(storage: Storage, cipher: Cipher, snapshot_id: str) -> Snapshot:
    """The manifest, authenticated and decrypted in an encrypted repository."""
    key = manifest_key(snapshot_id)
    try:
        data = read_all(storage, key)
        if cipher is not None:
            data = b"".join(cipher.decrypt([data], key.encode()))
        return Snapshot.from_json(data)
    except IntegrityError as e:
        raise IntegrityError(f'manifest of snapshot "{snapshot_id}" is corrupt: {e}') from e
    except ValueError as e:
        raise IntegrityError(f'manifest of snapshot "{snapshot_id}" is unreadable: {e}') from e


def find_snapshot(storage: Storage, cipher: Cipher, snapshot_id: str) -> Snapshot | None:
    try:
        return load_snapshot(storage, cipher, snapshot_id)
    except NotFound:
        return None


def list_snapshots(storage: Storage, cipher: Cipher) -> list[Snapshot]:
    """Every snapshot, oldest first."""
    ids = [sid for key, _ in storage.list(SNAPSHOTS_DIR) if (sid := snapshot_id_of(key))]
    return sorted((load_snapshot(storage, cipher, sid) for sid in ids),
                  key=lambda s: s.finished_at)


def resolve_snapshot(storage: Storage, cipher: Cipher, repository: str, wanted: str,
                     source: str | None = None) -> Snapshot:
    """``latest`` (the newest of ``source``, see ``workflows.restores``) or an id (of
    ``source``, if named) → the snapshot; ``NotFound`` names repository and id."""
    if wanted == LATEST:
        return latest_snapshot(list_snapshots(storage, cipher), source, repository=repository)
    snapshot = find_snapshot(storage, cipher, wanted)
    if snapshot is None:
        raise NotFound(f'snapshot "{wanted}" not found in Repository "{repository}"')
    check_source(snapshot, source)
    return snapshot


def write_snapshot(storage: Storage, cipher: Cipher, snapshot: Snapshot) -> None:
    key, data = manifest_key(snapshot.id), snapshot.to_json()
    storage.put_stream(key, [data] if cipher is None else cipher.encrypt([data], key.encode()))


def read_config(storage: Storage) -> RepositoryConfig | None:
    """``config.json``, or None for a new repository; refuses a format newer than ours."""
    try:
        data = read_all(storage, CONFIG_KEY)
    except NotFound:
        return None
    try:
        config = RepositoryConfig.from_json(data)
    except ValueError as e:
        raise IntegrityError(f"{CONFIG_KEY} is unreadable: {e}") from e
    if config.format_version > ENCRYPTED_FORMAT_VERSION:
        raise IntegrityError(f"repository format {config.format_version} is newer than this "
                             f"StashQ understands ({ENCRYPTED_FORMAT_VERSION}); upgrade StashQ")
    return config


def create_config(storage: Storage, password: str | None) -> RepositoryConfig:
    """Write a new repository's ``config.json``: encrypted if there is a password.

    It holds a random key, so it must be written once: callers hold the repository's
    exclusive lock and read again first.
    """
    config = new_config(None if password is None else new_encryption(password)[0])
    storage.put_stream(CONFIG_KEY, [config.to_json()])
    return config


def unlock(config: RepositoryConfig | None, password: str | None, *, repository: str,
           secret: str | None) -> Cipher:
    """The cipher for a repository with ``config`` (None: not created yet), or
    ``PrecheckFailed`` naming the Repository and Secret (never the password)."""
    holder = f'{PASSWORD_KEY} in Secret "{secret}"' if secret else PASSWORD_KEY
    encryption = config.encryption if config is not None else None
    if encryption is None:
        if config is not None and password is not None:
            raise PrecheckFailed(f'Repository "{repository}" is not encrypted, but {holder} '
                                 "is set: remove it, or use a new repository (another "
                                 "prefix) to encrypt")
        return None
    if password is None:
        raise PrecheckFailed(f'Repository "{repository}" is encrypted: set its password as '
                             f"{PASSWORD_KEY} in Secret "
                             f'"{secret or "(spec.backend.storageSecretName)"}"')
    try:
        return open_encryption(encryption, password)
    except PrecheckFailed as e:
        raise PrecheckFailed(f'Repository "{repository}": {holder}: {e}') from None


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
