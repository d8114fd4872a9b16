"""``stashq check``: does every snapshot's data exist, with the recorded size (and, with
``read_data``, the recorded sha256)? Data without a manifest is listed as orphaned.

Read-only: it reports, it never repairs or deletes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from workers.snapshots import load_snapshot
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound
from workflows.snapshots import DATA_DIR, snapshot_id_of


@dataclass
class CheckReport:
    snapshots: int = 0
    streams: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_repository(storage: Storage, *, read_data: bool = False) -> CheckReport:
    report = CheckReport()
    objects = dict(storage.list(""))
    claimed: set[str] = set()
    for key in sorted(objects):
        snapshot_id = snapshot_id_of(key)
        if snapshot_id is None:
            continue
        report.snapshots += 1
        try:
            snapshot = load_snapshot(storage, snapshot_id)
        except IntegrityError as e:
            report.problems.append(str(e))
            continue
        for stream in snapshot.streams:
            report.streams += 1
            claimed.add(stream.key)
            problem = _check_stream(storage, objects, stream.key, stream.size_bytes,
                                    stream.sha256 if read_data else None, report)
            if problem:
                report.problems.append(f'snapshot "{snapshot_id}" stream {stream.name}: {problem}')
    report.orphans = sorted(k for k in objects if k.startswith(DATA_DIR) and k not in claimed)
    return report


def _check_stream(storage: Storage, objects: dict[str, int], key: str, size: int,
                  sha256: str | None, report: CheckReport) -> str | None:
    if key not in objects:
        return "data is missing"
    if objects[key] != size:
        return f"size is {objects[key]} bytes, manifest says {size}"
    if sha256 is None:
        return None
    digest = hashlib.sha256()
    try:
        for chunk in storage.get_stream(key):
            digest.update(chunk)
            report.bytes_read += len(chunk)
    except NotFound:
        return "data is missing"
    if digest.hexdigest() != sha256:
        return f"sha256 is {digest.hexdigest()[:16]}…, manifest says {sha256[:16]}…"
    return None

