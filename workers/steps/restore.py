"""restore: repository → sha256 (+ per-segment authentication) + zstd checksum → the SQL
client, as one stream.

A one-database snapshot (dumped without CREATE DATABASE / USE) can be restored under
another name (param ``database``); a multi-database snapshot recreates its databases
by their own names. A sha256 mismatch kills the client before its input is closed and
fails the session naming the snapshot; in an encrypted repository a segment that does
not authenticate does so before any byte of it reaches the client.
"""

from __future__ import annotations

import logging
import time

from workers import database
from workers.binlog_replay import replay_to_point
from workers.context import StepContext
from workers.engines.base import defaults_file
from workers.parallel_restore import is_parallel, restore_parallel
from workers.process import ClientProcess
from workers.steps.dump_upload import report_progress
from workers.steps.session import DATA_QUEUE, session_step, set_status
from workflows.params import RestoreParams
from workflows.restores import target_database
from workflows.snapshots import Snapshot


def restore_snapshot(ctx: StepContext, params: RestoreParams) -> Snapshot:
    snapshot = ctx.restore_snapshot
    db = target_database(snapshot, params.database)
    if db is not None:
        what = f'AppBinding "{ctx.appbinding.name}"'
        with database.connect(ctx.connection, what=what) as c, c.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {database.quote_identifier(db)}")
    set_status(ctx, {"snapshot": {"name": snapshot.id, "database": db}})
    started = time.monotonic()
    if is_parallel(snapshot):  # schema, then data streams at once, then post-data
        restore_parallel(ctx, snapshot, db, params, report_progress(ctx, started))
        return snapshot
    with defaults_file(ctx.connection) as cnf:
        for stream in snapshot.streams:
            client = ClientProcess(ctx.engine.restore_args(cnf, db, params.args),
                                   stdin_pipe=True)
            try:  # a corrupt stream raises inside feed, before the client's input is closed
                client.feed(ctx.repo.read_stream(snapshot, stream, report_progress(ctx, started)))
            finally:
                client.stop()
    return snapshot


def replay_binlogs(ctx: StepContext, snapshot: Snapshot, params: RestoreParams) -> None:
    """A restore to a point: replay the archived binlog from the snapshot on."""
    recovery = ctx.recovery
    if recovery is None:
        return
    db = target_database(snapshot, params.database)
    with defaults_file(ctx.connection) as cnf:
        replayed = replay_to_point(ctx, recovery, cnf, snapshot.databases, db,
                                   list(params.args))
    set_status(ctx, {"pointInTime": replayed})


@session_step("stashq.restore_stream", queue=DATA_QUEUE)
def restore(ctx: StepContext, params: RestoreParams) -> None:
    """Restore the session's snapshot into its target (then, to a point, replay the
    archived binlog up to it)."""
    started = time.monotonic()
    snapshot = restore_snapshot(ctx, params)
    replay_binlogs(ctx, snapshot, params)
    set_status(ctx, {"snapshot": {"name": snapshot.id, "totalSize": snapshot.size_bytes,
                                  "rawSize": snapshot.raw_bytes,
                                  "processingTimeSeconds": round(time.monotonic() - started, 3)}})
    logging.getLogger(__name__).info("restored snapshot %s", snapshot.id)
