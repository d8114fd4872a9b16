"""A repository's check (``stashq check``): does every snapshot's data exist, with the
recorded size (and, with ``read_data``, the recorded sha256)? Data without a manifest is
listed as orphaned.

In an encrypted repository every manifest is authenticated as it is read, and with
``read_data`` every segment of every stream too (decrypted, never decompressed or kept).
Read-only: it reports, it never repairs or deletes.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from workers.repository.manifests import load_snapshot
from workers.repository.streams import Cipher
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound
from workflows.snapshots import DATA_DIR, snapshot_id_of


@dataclass
class CheckReport:
    format_version: int | None = None  #: of the repository (None: nothing written yet)
    snapshots: int = 0
    streams: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_repository(storage: Storage, cipher: Cipher, *, read_data: bool = False) -> CheckReport:
    report = CheckReport()
    objects = dict(storage.list(""))
    claimed: set[str] = set()
    for key in sorted(objects):
        snapshot_id = snapshot_id_of(key)
        if snapshot_id is None:
            continue
        report.snapshots += 1
        try:
            snapshot = load_snapshot(storage, cipher, snapshot_id)
        except IntegrityError as e:
            report.problems.append(str(e))
            continue
        for stream in snapshot.streams:
            report.streams += 1
            claimed.add(stream.key)
            problem = _check_stream(storage, objects, stream.key, stream.size_bytes,
                                    stream.sha256 if read_data else None, report, cipher)
            if problem:
                report.problems.append(f'snapshot "{snapshot_id}" stream {stream.name}: {problem}')
    report.orphans = sorted(k for k in objects if k.startswith(DATA_DIR) and k not in claimed)
    return report


def _check_stream(storage: Storage, objects: dict[str, int], key: str, size: int,
                  sha256: str | None, report: CheckReport, cipher: Cipher) -> str | None:
    if key not in objects:
        return "data is missing"
    if objects[key] != size:
        return f"size is {objects[key]} bytes, manifest says {size}"
    if sha256 is None:
        return None
    digest = hashlib.sha256()
    chunks = _hashed(storage.get_stream(key), digest, report)
    try:
        if cipher is None:
            collections.deque(chunks, maxlen=0)
        else:
            collections.deque(cipher.decrypt(chunks, key.encode()), maxlen=0)
    except NotFound:
        return "data is missing"
    except IntegrityError as e:
        return str(e)
    if digest.hexdigest() != sha256:
        return f"sha256 is {digest.hexdigest()[:16]}…, manifest says {sha256[:16]}…"
    return None


def _hashed(chunks: Iterator[bytes], digest: hashlib._Hash,
            report: CheckReport) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        report.bytes_read += len(chunk)
        yield chunk
