"""Snapshot manifests: written last, so that a snapshot exists exactly when its manifest
does; read authenticated (in an encrypted repository) and validated."""

from __future__ import annotations

from collections.abc import Iterator

from workers.repository.streams import Cipher, read_small, write_small
from workers.storage.base import Storage
from workflows.errors import IntegrityError
from workflows.snapshots import SNAPSHOTS_DIR, Snapshot, manifest_key, snapshot_id_of


def load_snapshot(storage: Storage, cipher: Cipher, snapshot_id: str) -> Snapshot:
    """The manifest; ``NotFound`` if there is none, ``IntegrityError`` if it is corrupt."""
    try:
        return Snapshot.from_json(read_small(storage, cipher, manifest_key(snapshot_id)))
    except IntegrityError as e:
        raise IntegrityError(f'manifest of snapshot "{snapshot_id}" is corrupt: {e}') from e
    except ValueError as e:
        raise IntegrityError(f'manifest of snapshot "{snapshot_id}" is unreadable: {e}') from e


def write_manifest(storage: Storage, cipher: Cipher, snapshot: Snapshot) -> None:
    write_small(storage, cipher, manifest_key(snapshot.id), snapshot.to_json())


def snapshot_ids(storage: Storage) -> Iterator[str]:
    """The id of every manifest in the repository, in listing order."""
    return (sid for key, _ in storage.list(SNAPSHOTS_DIR) if (sid := snapshot_id_of(key)))
