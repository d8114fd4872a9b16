"""dump-and-upload: the engine's dump client → zstd → sha256 → repository, as one stream.

Idempotent per session: the snapshot id is the session name, so a redelivered step
finds its finished snapshot and stops, or discards any half-written data and starts
again from scratch. The manifest is written last; any failure before it (client exit
code, an error line, a missing completion line, an upload error) aborts the upload
and leaves no snapshot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from workers import database
from workers.context import StepContext
from workers.engines.base import defaults_file
from workers.locks import backup_lock
from workers.process import ClientProcess
from workers.snapshots import ensure_config, find_snapshot, write_snapshot, write_stream
from workers.steps.session import DATA_QUEUE, now_iso, session_step, set_status
from workers.streaming import StreamStats
from workflows.errors import DumpFailed, PrecheckFailed
from workflows.snapshots import DATA_DIR, Snapshot, data_key

log = logging.getLogger(__name__)

STREAM_NAME = "dump.sql.zst"
#: mariadb-dump and mysqldump end every complete dump with this comment.
COMPLETION_MARK = b"-- Dump completed"


def selected_databases(ctx: StepContext, params: Mapping[str, str]) -> list[str]:
    wanted = [d.strip() for d in params.get("databases", "").split(",") if d.strip()]
    what = f'AppBinding "{ctx.appbinding.name}"'
    with database.connect(ctx.connection, what=what) as conn:
        present = database.user_databases(conn)
    missing = sorted(set(wanted) - set(present))
    if missing:
        raise PrecheckFailed(f"{what}: database(s) not found: {', '.join(missing)}")
    if not (wanted or present):
        raise PrecheckFailed(f"{what}: the server has no user databases to back up")
    return wanted or present


def require_completion(client: str) -> Callable[[StreamStats], None]:
    """A stream end check: fail if the dump was cut short (no completion line)."""
    def check(stats: StreamStats) -> None:
        if COMPLETION_MARK not in stats.tail:
            raise DumpFailed(f"{client} output ended without its completion line: the dump "
                             "is incomplete")
    return check


def report_progress(ctx: StepContext, started: float) -> Callable[[StreamStats], None]:
    def report(stats: StreamStats) -> None:
        elapsed = max(time.monotonic() - started, 1e-3)
        set_status(ctx, {"progress": {"bytesDumped": stats.raw_bytes,
                                      "bytesStored": stats.stored_bytes,
                                      "rateBytesPerSecond": int(stats.raw_bytes / elapsed),
                                      "elapsedSeconds": round(elapsed, 1),
                                      "updatedAt": now_iso()}})
    return report


def dump_to_repository(ctx: StepContext, params: Mapping[str, str]) -> Snapshot:
    storage, snapshot_id = ctx.storage, ctx.ref.name
    databases = selected_databases(ctx, params)
    server = ctx.session.status.get("server", {})
    ensure_config(storage)
    storage.cleanup_incomplete(f"{DATA_DIR}{snapshot_id}/")
    started_at, started = datetime.now(UTC), time.monotonic()
    level = int(params.get("zstdLevel") or ctx.settings.zstd_level)
    extra = params.get("args", "").split()
    with defaults_file(ctx.connection) as cnf:
        client = ClientProcess(ctx.engine.dump_args(cnf, databases, extra))
        log.info("dumping %d database(s) with %s (pid %d)", len(databases), client.name, client.pid)
        try:
            stream = write_stream(storage, data_key(snapshot_id, STREAM_NAME), STREAM_NAME,
                                  client.chunks(ctx.settings.dump_chunk_bytes), level=level,
                                  report=report_progress(ctx, started),
                                  check_end=require_completion(client.name))
        finally:
            client.stop()
    snapshot = Snapshot(
        id=snapshot_id, session=ctx.ref.name, repository=ctx.repository.name,
        engine=ctx.appbinding.engine.value, server_version=server.get("version", "unknown"),
        target=ctx.appbinding.name, databases=tuple(databases),
        streams=(stream,),
        started_at=started_at, finished_at=datetime.now(UTC))
    write_snapshot(storage, snapshot)
    return snapshot


@session_step("stashq.dump_upload", queue=DATA_QUEUE)
def dump_upload(ctx: StepContext, params: Mapping[str, str]) -> None:
    """Take the snapshot unless this session already has one; record its stats."""
    snapshot = find_snapshot(ctx.storage, ctx.ref.name)
    if snapshot is not None:
        log.info("snapshot %s already complete; not taking it again", snapshot.id)
    else:
        with backup_lock(ctx.store, ctx.repository, str(ctx.ref)):  # retention waits for it
            snapshot = dump_to_repository(ctx, params)
    seconds = (snapshot.finished_at - snapshot.started_at).total_seconds()
    set_status(ctx, {"snapshot": {"name": snapshot.id, "totalSize": snapshot.size_bytes,
                                  "uploaded": snapshot.size_bytes, "rawSize": snapshot.raw_bytes,
                                  "processingTimeSeconds": round(seconds, 3),
                                  "databases": list(snapshot.databases)}})
