"""The Repository object: one owner for every byte of a repository.

It is built from a Repository resource and its Secret (``open_repository``) and is the
only code that knows the key layout, the format version and the cipher: steps ask it
to "write this stream into snapshot X", "read that stream", "commit the manifest",
"forget and prune", "check"; they never build a key or touch a cipher. Storage
backends stay a dumb key-value protocol below it (``workers/storage``).

Format 3 (deduplicating: chunks, packs, index; ``format3.py``) and formats 1 and 2 (one
object per stream; ``streams.py``) are chosen here by ``config.json``, so steps call the
same methods for every format.

The cipher is opened lazily, on the first read or write of data: a wrong or missing
password fails then, as ``PrecheckFailed`` naming the Repository and the Secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from workers.encryption import PASSWORD_KEY
from workers.repository.binlogs import (
    delete_segment,
    load_segment,
    read_segment,
    segment_numbers,
    sources,
    write_segment,
)
from workers.repository.check import CheckReport, check_repository
from workers.repository.config import create_config, read_config, unlock
from workers.repository.format3 import Format3
from workers.repository.manifests import load_snapshot, snapshot_ids, write_manifest
from workers.repository.prune import LeaseCheck, abort_dead_uploads, forget, prune
from workers.repository.streams import Cipher, Report, read_stream, write_stream
from workers.storage import open_storage
from workers.storage.base import Storage
from workers.streaming import ZSTD_THREADS
from workflows.binlogs import BinlogSegment
from workflows.errors import NotFound
from workflows.recovery import Point, Recovery, binlog_source, plan_recovery, snapshot_points
from workflows.resources import Repository as RepositoryResource
from workflows.resources import Secret
from workflows.resources.restore import LATEST
from workflows.restores import check_source, latest_snapshot
from workflows.settings import Settings
from workflows.snapshots import (
    DATA_DIR,
    DEDUP_FORMAT_VERSION,
    RepositoryConfig,
    Snapshot,
    Stream,
    data_key,
)

log = logging.getLogger(__name__)


@dataclass
class Repository:
    """A repository, opened. ``name`` is the Repository resource's (for messages)."""

    storage: Storage
    name: str
    password: str | None = None
    secret_name: str | None = None  #: where the password comes from (for messages)
    _cipher: tuple[Cipher] | None = field(default=None, repr=False)  #: once config exists
    #: The format a new repository gets (``Settings.new_repository_format``).
    new_format: int = DEDUP_FORMAT_VERSION
    _format3: Format3 | None = field(default=None, repr=False)

    # --- config and cipher ------------------------------------------------------------

    @property
    def config(self) -> RepositoryConfig | None:
        """``config.json``; None for a repository no backup has written to yet."""
        return read_config(self.storage)

    @property
    def cipher(self) -> Cipher:
        """None if unencrypted, or new (asked again next time); ``PrecheckFailed`` if the
        password is missing or wrong, or set for an unencrypted repository."""
        if self._cipher is None:
            config = self.config
            if config is None:
                return None
            self._cipher = (unlock(config, self.password, repository=self.name,
                                   secret=self.secret_name),)
        return self._cipher[0]

    @property
    def format_version(self) -> int | None:
        """1, 2 or 3; None for a repository no backup has written to yet."""
        config = self.config
        return None if config is None else config.format_version

    def _dedup(self) -> Format3 | None:
        """Format 3's streams, or None for a repository in format 1 or 2."""
        if self._format3 is None:
            config = self.config
            if config is None or config.chunker is None:
                return None
            self._format3 = Format3(self.storage, self.cipher, config.chunker)
        return self._format3

    def ensure_config(self, exclusive: Callable[[], AbstractContextManager[object]]) -> None:
        """Give a new repository its ``config.json`` (with a password: a random key,
        wrapped) before anything is written: once, inside ``exclusive()`` (the
        repository's exclusive lock), since two first backups may race and the loser's
        key would be lost."""
        if self.config is None:
            with exclusive():
                if self.config is None:
                    create_config(self.storage, self.password, self.new_format)

    def check_writable(self) -> None:
        """Raise a specific ``StorageError`` unless a backup could be written now."""
        self.storage.check_writable()

    # --- snapshots --------------------------------------------------------------------

    def list_snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        cipher = self.cipher
        return sorted((load_snapshot(self.storage, cipher, sid)
                       for sid in snapshot_ids(self.storage)), key=lambda s: s.finished_at)

    def find_snapshot(self, snapshot_id: str) -> Snapshot | None:
        try:
            return load_snapshot(self.storage, self.cipher, snapshot_id)
        except NotFound:
            return None

    def resolve_snapshot(self, wanted: str, source: str | None = None) -> Snapshot:
        """``latest`` (the newest of ``source``, see ``workflows.restores``) or an id (of
        ``source``, if named) → the snapshot; ``NotFound`` names repository and id."""
        if wanted == LATEST:
            return latest_snapshot(self.list_snapshots(), source, repository=self.name)
        snapshot = self.find_snapshot(wanted)
        if snapshot is None:
            raise NotFound(f'snapshot "{wanted}" not found in Repository "{self.name}"')
        check_source(snapshot, source)
        return snapshot

    def stats(self) -> dict[str, object]:
        """What the Repository resource's status says of it."""
        items = self.list_snapshots()
        dedup = self._dedup()
        total = dedup.stored_bytes() if dedup else sum(s.size_bytes for s in items)
        stats: dict[str, object] = {"snapshotCount": len(items), "totalSizeBytes": total}
        if items:
            stats["firstBackupTime"] = _iso(items[0])
            stats["lastBackupTime"] = _iso(items[-1])
        return stats

    # --- writing a snapshot -----------------------------------------------------------

    def discard_unfinished(self, snapshot_id: str) -> None:
        """Drop what an earlier, interrupted attempt at ``snapshot_id`` left half written."""
        if (dedup := self._dedup()) is not None:
            dedup.discard_unfinished(snapshot_id)
            return
        self.storage.cleanup_incomplete(f"{DATA_DIR}{snapshot_id}/")

    def write_stream(self, snapshot_id: str, name: str, raw: Iterable[bytes], *, level: int,
                     threads: int = ZSTD_THREADS, report: Report | None = None,
                     check_end: Report | None = None) -> Stream:
        """Store ``raw`` as stream ``name`` of the (uncommitted) snapshot; see
        ``streams.write_stream`` for ``threads``, ``report`` and ``check_end``."""
        if (dedup := self._dedup()) is not None:
            return dedup.write_stream(snapshot_id, name, raw, level=level, threads=threads,
                                      report=report, check_end=check_end)
        return write_stream(self.storage, self.cipher, data_key(snapshot_id, name), name, raw,
                            level=level, threads=threads, report=report, check_end=check_end)

    def discard_stream(self, stream: Stream) -> None:
        """Delete a stream of a snapshot that will not be committed (format 3: its new
        chunks are garbage that prune removes)."""
        if stream.chunks is None:
            self.storage.delete(stream.key)

    def commit(self, snapshot: Snapshot) -> None:
        """Write the manifest, last: from now on the snapshot exists."""
        write_manifest(self.storage, self.cipher, snapshot)

    # --- reading ----------------------------------------------------------------------

    def read_stream(self, snapshot: Snapshot, stream: Stream,
                    report: Report | None = None) -> Iterator[bytes]:
        """The stream's original bytes, verified (see ``streams.read_stream``)."""
        if stream.chunks is not None and (dedup := self._dedup()) is not None:
            return dedup.read_stream(snapshot.id, stream, report)
        return read_stream(self.storage, self.cipher, snapshot.id, stream, report)

    # --- binlog archive (point-in-time recovery; see ``binlogs``) -----------------------

    def binlog_segments(self, source: str) -> list[BinlogSegment]:
        """Every archived binlog segment of ``source`` (a BackupConfiguration), in order."""
        cipher = self.cipher
        return [load_segment(self.storage, cipher, source, seq)
                for seq in segment_numbers(self.storage, source)]

    def last_binlog_segment(self, source: str) -> BinlogSegment | None:
        """Where archiving of ``source`` stands: its newest segment (None: none yet)."""
        numbers = segment_numbers(self.storage, source)
        if not numbers:
            return None
        return load_segment(self.storage, self.cipher, source, numbers[-1])

    def write_binlog_segment(self, segment: BinlogSegment, raw: Iterable[bytes] | None, *,
                             level: int, before_manifest: Callable[[], object] = lambda: None
                             ) -> BinlogSegment:
        """Store a segment's bytes, then its manifest (written last, as a snapshot's)."""
        return write_segment(self.storage, self.cipher, segment, raw, level=level,
                             before_manifest=before_manifest)

    def read_binlog_segment(self, segment: BinlogSegment) -> Iterator[bytes]:
        """A segment's binlog bytes, verified."""
        return read_segment(self.storage, self.cipher, segment)

    def forget_binlog_segments(self, segments: Iterable[BinlogSegment],
                               check: LeaseCheck) -> int:
        """Delete these segments (manifest first, then data); how many."""
        count = 0
        for segment in segments:
            check()
            delete_segment(self.storage, segment)
            count += 1
        return count

    def binlog_sources(self) -> list[str]:
        """The BackupConfigurations that have archived binlogs here."""
        return sources(self.storage)

    def plan_recovery(self, point: Point, source: str | None,
                      snapshot: str | None = None) -> Recovery:
        """A restore to ``point`` of ``source`` (None: the only archived one): the newest
        snapshot before it (or ``snapshot``, once chosen) and the segments to replay;
        ``PrecheckFailed`` names the window and gaps if the point is outside."""
        snapshots = self.list_snapshots()
        name = binlog_source(source, snapshots, self.binlog_sources(), repository=self.name)
        points = [p for p in snapshot_points(snapshots, name) if snapshot in (None, p.id)]
        return plan_recovery(point, self.binlog_segments(name), points)

    # --- retention and check ----------------------------------------------------------

    def forget(self, ids: Iterable[str], check: LeaseCheck) -> None:
        """Delete these snapshots' manifests (their data stays until a prune)."""
        forget(self.storage, ids, check)

    def prune(self, *, belongs: Callable[[str], bool], forgotten: Iterable[str],
              exclusive: bool, check: LeaseCheck) -> int:
        """Delete unreferenced data of the snapshots ``belongs`` selects (see ``prune``);
        format 3: every chunk no manifest names, only with the ``exclusive`` lock (a
        running backup's chunks have no manifest yet, and may be anyone's)."""
        if (dedup := self._dedup()) is not None:
            if not exclusive:
                log.warning("format 3 prunes only under the exclusive lock: nothing pruned")
                return 0
            return dedup.prune(check)
        return prune(self.storage, belongs=belongs, forgotten=forgotten, exclusive=exclusive,
                     check=check)

    def abort_dead_uploads(self) -> int:
        """Under the exclusive lock: abort every multipart upload left open."""
        return abort_dead_uploads(self.storage)

    def check(self, *, read_data: bool = False) -> CheckReport:
        """Every snapshot's data present with its size (and, ``read_data``, its hash)."""
        if (dedup := self._dedup()) is not None:
            return dedup.check(read_data=read_data)
        report = check_repository(self.storage, self.cipher, read_data=read_data)
        report.format_version = self.format_version
        return report


def open_repository(resource: RepositoryResource, secret: Secret | None,
                    settings: Settings) -> Repository:
    """The Repository object of a Repository resource and its storage Secret."""
    password = None if secret is None else secret.values.get(PASSWORD_KEY)
    return Repository(open_storage(resource, secret, settings), resource.name, password,
                      resource.spec.backend.storage_secret_name,
                      new_format=settings.new_repository_format)


def _iso(snapshot: Snapshot) -> str:
    return snapshot.finished_at.isoformat(timespec="seconds").replace("+00:00", "Z")
