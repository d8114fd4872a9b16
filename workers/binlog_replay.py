"""Replay archived binlog segments into the restored target, up to a point.

The pipeline: repository (verified, decrypted, decompressed) → the replay filter
(``workflows/replay.py``: what to skip, where to stop) → ``mariadb-binlog -`` (decodes
events into SQL) → the SQL client, the last two joined by an OS pipe as in ``mariadb-binlog
FILES | mariadb``. The replay is restricted to the snapshot's databases (``--database``,
one pass per database: the decoder takes one), under the restored name if the restore
renamed it (``--rewrite-db``). Whatever the clients say wrong, or a replay that does not
end at the point, fails the restore.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from workers.binlog_archive import binlog_client
from workers.context import StepContext
from workers.process import ClientProcess
from workflows.binlog_events import events
from workflows.errors import IntegrityError
from workflows.recovery import Recovery
from workflows.replay import ReplayFilter

log = logging.getLogger(__name__)


def decoder_args(database: str, renamed: str | None) -> list[str]:
    """``mariadb-binlog`` reading a binlog on stdin, only ``database``'s changes."""
    rewrite = [f"--rewrite-db={database}->{renamed}"] if renamed and renamed != database else []
    return [binlog_client(), "--no-defaults", f"--database={database}", *rewrite, "-"]


def replay_database(ctx: StepContext, recovery: Recovery, cnf: Path, database: str,
                    renamed: str | None, extra: Sequence[str]) -> ReplayFilter:
    """One pass over the segments, replaying ``database``'s changes (as ``renamed``)."""
    replay = ReplayFilter(recovery.start_state, recovery.point, recovery.end_state)

    def chunks() -> Iterator[bytes]:
        for segment in recovery.segments:
            yield from replay.passing(segment.file, events(ctx.repo.read_binlog_segment(segment)))
            if replay.done:
                return

    if recovery.segments:  # none: the snapshot ends at the point (the decoder needs input)
        pipe(chunks(), decoder_args(database, renamed), ctx.engine.restore_args(cnf, None, extra))
    problem = replay.ended_at_point()
    if problem is not None:
        raise IntegrityError(f"restore to {recovery.point}: {problem}")
    return replay


def pipe(data: Iterator[bytes], decoder_argv: list[str], sql_argv: list[str]) -> None:
    """``data | decoder | SQL client``; ``DumpFailed`` if either fails."""
    decoder = ClientProcess(decoder_argv, stdin_pipe=True, stdout_pipe=True)
    try:
        sql = ClientProcess(sql_argv, stdin_from=decoder.stdout)
    except BaseException:
        decoder.stop()
        raise
    decoder.stdout.close()  # the SQL client holds the pipe now: it sees the decoder's end
    try:
        decoder.feed(data)
        sql.finish()
    finally:
        decoder.stop()
        sql.stop()


def replay_to_point(ctx: StepContext, recovery: Recovery, cnf: Path,
                    databases: Sequence[str], renamed: str | None,
                    extra: Sequence[str]) -> dict[str, object]:
    """Replay into every database of the snapshot; what the status says of it."""
    started = time.monotonic()
    replays = [replay_database(ctx, recovery, cnf, db, renamed, extra) for db in databases]
    seconds = round(time.monotonic() - started, 3)
    last = replays[-1] if replays else ReplayFilter(recovery.start_state, recovery.point)
    log.info("replayed %d transaction(s) from %s to %s (%s)", last.transactions,
             recovery.start_state, last.last or recovery.start_state, recovery.point)
    return {"point": str(recovery.point), "fromGtid": recovery.start_state,
            "throughGtid": str(last.last) if last.last else recovery.start_state,
            "transactions": last.transactions, "segments": len(recovery.segments),
            "replaySeconds": seconds}
