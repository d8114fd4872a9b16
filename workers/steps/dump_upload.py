"""dump-and-upload: the engine's dump client → zstd → (encryption →) sha256 → repository,
as one stream.

Idempotent per session: the snapshot id is the session name, so a redelivered step
finds its finished snapshot and stops, or discards any half-written data and starts
again from scratch. The manifest is written last; any failure before it (client exit
code, an error line, a missing completion line, an upload error) aborts the upload
and leaves no snapshot.

The step holds its target's lock exclusively (``workers/locks.py``) and looks for the
snapshot again once it has it: a duplicate of the step (a redelivered message while a
re-queued run is still dumping) waits for the other, then finds its snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from workers import database
from workers.context import StepContext
from workers.dump_coordinates import CoordinateScan
from workers.dump_rows import RowCounter
from workers.engines.base import defaults_file
from workers.locks import BACKUP_WAIT_S, backup_lock, repository_lock, target_lock_name
from workers.parallel_dump import Dumped, dump_parallel
from workers.pauses import pause_at
from workers.process import ClientProcess
from workers.steps.session import DATA_QUEUE, now_iso, session_step, set_status
from workers.streaming import StreamStats
from workflows.errors import DumpFailed, PrecheckFailed
from workflows.gtids import Coordinates
from workflows.params import DumpParams
from workflows.snapshots import Position, Snapshot

log = logging.getLogger(__name__)

STREAM_NAME = "dump.sql.zst"
#: mariadb-dump and mysqldump end every complete dump with this comment.
COMPLETION_MARK = b"-- Dump completed"


def selected_databases(ctx: StepContext, params: DumpParams) -> tuple[list[str], bool]:
    """The databases to dump (param ``databases``, else every user database), and
    whether the server writes a binlog (then the snapshot records its coordinates)."""
    wanted = list(params.databases)
    what = f'AppBinding "{ctx.appbinding.name}"'
    with database.connect(ctx.connection, what=what) as conn:
        present = database.user_databases(conn)
        binlog = database.binlog_enabled(conn)
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise PrecheckFailed(f"{what}: database(s) not found: {', '.join(missing)}")
    if not (wanted or present):
        raise PrecheckFailed(f"{what}: the server has no user databases to back up")
    return wanted or present, binlog


def require_completion(client: str) -> Callable[[StreamStats], None]:
    """A stream end check: fail if the dump was cut short (no completion line)."""
    def check(stats: StreamStats) -> None:
        if COMPLETION_MARK not in stats.tail:
            raise DumpFailed(f"{client} output ended without its completion line: the dump "
                             "is incomplete")
    return check


def report_progress(ctx: StepContext, started: float) -> Callable[[StreamStats], None]:
    """Progress into the status, best effort: a state store that is restarting must not
    abort a dump that the repository is taking (the heartbeat says the same)."""
    def report(stats: StreamStats) -> None:
        elapsed = max(time.monotonic() - started, 1e-3)
        try:
            set_status(ctx, {"progress": {"bytesDumped": stats.raw_bytes,
                                          "bytesStored": stats.stored_bytes,
                                          "rateBytesPerSecond": int(stats.raw_bytes / elapsed),
                                          "elapsedSeconds": round(elapsed, 1),
                                          "updatedAt": now_iso()}})
        except Exception as e:
            log.warning("progress not recorded: %s: %s", type(e).__name__, e)
    return report


@contextlib.contextmanager
def _creating(ctx: StepContext) -> Iterator[None]:
    """The repository's exclusive lock, while a first backup writes its ``config.json``."""
    with repository_lock(ctx.store, ctx.repository, str(ctx.ref), exclusive=True,
                         purpose="create config.json", wait_s=BACKUP_WAIT_S):
        yield


def dump_stream(ctx: StepContext, cnf: Path, databases: Sequence[str], level: int,
                extra: Sequence[str], started: float, *, binlog: bool) -> Dumped:
    """The single dump: one client, one stream; the coordinates it states, if the server
    writes a binlog (``binlog``)."""
    options = ctx.engine.coordinates_options() if binlog else ()
    client = ClientProcess(ctx.engine.dump_args(cnf, databases, [*options, *extra]))
    log.info("dumping %d database(s) with %s (pid %d)", len(databases), client.name, client.pid)
    pause_at(ctx.settings, "before_upload")
    scan, rows = CoordinateScan(), RowCounter.of(databases)
    try:
        chunks = rows.tap(scan.passing(client.chunks(ctx.settings.dump_chunk_bytes)))
        stream = rows.recorded(ctx.repo.write_stream(
            ctx.ref.name, STREAM_NAME, chunks, level=level, threads=ctx.settings.zstd_threads,
            report=report_progress(ctx, started), check_end=require_completion(client.name)))
    finally:
        client.stop()
    return (stream,), scan.coordinates()


def snapshot_position(coordinates: Coordinates | None) -> Position | None:
    """What a logical snapshot's manifest records of its binlog coordinates."""
    if coordinates is None:
        return None
    return Position(gtid=coordinates.gtid, log_file=coordinates.log_file or None,
                    log_pos=coordinates.log_pos if coordinates.log_file else None)


def dump_to_repository(ctx: StepContext, params: DumpParams) -> Snapshot:
    snapshot_id = ctx.ref.name
    databases, binlog = selected_databases(ctx, params)
    server = ctx.session.status.get("server", {})
    ctx.repo.discard_unfinished(snapshot_id)
    started_at, started = datetime.now(UTC), time.monotonic()
    level = params.zstd_level or ctx.settings.zstd_level
    extra = list(params.args)
    parallel = params.parallel or 1
    with defaults_file(ctx.connection) as cnf:
        if parallel > 1:  # several clients sharing one snapshot, a stream each
            streams, coordinates = dump_parallel(ctx, cnf, databases, parallel, level=level,
                                                 extra=extra,
                                                 report=report_progress(ctx, started),
                                                 completed=require_completion)
        else:
            streams, coordinates = dump_stream(ctx, cnf, databases, level, extra, started,
                                               binlog=binlog)
    snapshot = Snapshot(
        id=snapshot_id, session=ctx.ref.name, repository=ctx.repository.name,
        engine=ctx.appbinding.engine.value, server_version=server.get("version", "unknown"),
        target=ctx.appbinding.name, configuration=ctx.invoker, databases=tuple(databases),
        streams=streams, position=snapshot_position(coordinates),
        started_at=started_at, finished_at=datetime.now(UTC))
    pause_at(ctx.settings, "before_manifest")
    ctx.repo.commit(snapshot)
    return snapshot


def take_snapshot(ctx: StepContext, params: DumpParams) -> Snapshot:
    """Under the target's and the repository's locks: the snapshot, taken if missing."""
    binding = ctx.appbinding
    target = target_lock_name(binding.kind, binding.namespace, binding.name)
    with backup_lock(ctx.store, ctx.repository, str(ctx.ref), target=target,
                     lease_s=ctx.settings.lock_lease_s,
                     on_wait=lambda why: set_status(ctx, {"waitingFor": why})) as expired:
        set_status(ctx, {"waitingFor": None,
                         **({"expiredLocks": list(expired)} if expired else {})})
        snapshot = ctx.repo.find_snapshot(ctx.ref.name)  # a duplicate's?
        if snapshot is not None:
            log.info("snapshot %s completed meanwhile; not taking it again", snapshot.id)
            return snapshot
        return dump_to_repository(ctx, params)


def snapshot_once(ctx: StepContext, take: Callable[[], Snapshot]) -> Snapshot:
    """This session's snapshot: the finished one if a previous delivery took it, else
    ``take()`` (idempotent per session: the snapshot id is the session name)."""
    ctx.repo.ensure_config(lambda: _creating(ctx))
    snapshot = ctx.repo.find_snapshot(ctx.ref.name)
    if snapshot is not None:
        log.info("snapshot %s already complete; not taking it again", snapshot.id)
        return snapshot
    return take()


def snapshot_stats(snapshot: Snapshot) -> dict[str, object]:
    """What a backup session's status says of its snapshot (both data steps)."""
    seconds = (snapshot.finished_at - snapshot.started_at).total_seconds()
    return {"name": snapshot.id, "totalSize": snapshot.size_bytes,
            "uploaded": snapshot.size_bytes, "rawSize": snapshot.raw_bytes,
            "processingTimeSeconds": round(seconds, 3)}


@session_step("stashq.dump_upload", queue=DATA_QUEUE)
def dump_upload(ctx: StepContext, params: DumpParams) -> None:
    """Take the snapshot unless this session already has one; record its stats."""
    snapshot = snapshot_once(ctx, lambda: take_snapshot(ctx, params))
    set_status(ctx, {"snapshot": snapshot_stats(snapshot)
                     | {"databases": list(snapshot.databases)}})
