"""History limits, applied where a session finishes: its last step, or its failure.

Beat also deletes BackupSessions beyond each configuration's ``backupHistoryLimit``,
but only while it runs; so the worker that ends a session prunes that session's
history itself. BackupSessions are counted per configuration (``backupHistoryLimit``),
RestoreSessions per target AppBinding (``STASHQ_RESTORE_HISTORY_LIMIT``). A session is
finished once its status has a completion time (every final phase is written with
one). The session that just finished is never deleted here, whatever the limit:
whoever waits for it must still read its phase.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from workers.context import StepContext
from workflows.resources import BackupSession, RestoreSession
from workflows.retention import finished_time, sessions_beyond_limit

log = logging.getLogger(__name__)


def prune_history(ctx: StepContext) -> list[str]:
    """Delete the finished sessions of ``ctx``'s configuration (or restore target)
    beyond its limit; return their names. Best effort: a failure is logged, the session
    that ended stays as it ended."""
    try:
        peers, limit = history_of(ctx)
        finished = [(s.name, at) for s in peers
                    if (at := finished_time(s.status)) is not None]
        doomed = [n for n in sessions_beyond_limit(finished, limit) if n != ctx.ref.name]
        for name in doomed:
            ctx.store.delete(ctx.ref.cls, name, ctx.ref.namespace)
            log.info("deleted %s %s/%s: beyond the history limit %d", ctx.ref.kind,
                     ctx.ref.namespace, name, limit)
        return doomed
    except Exception as e:
        log.warning("history of %s not pruned: %s: %s", ctx.ref, type(e).__name__, e)
        return []


def history_of(ctx: StepContext) -> tuple[Sequence[BackupSession | RestoreSession], int]:
    """The sessions sharing ``ctx``'s history (its own included) and their limit."""
    namespace = ctx.ref.namespace
    if ctx.config is not None:
        name = ctx.config.name
        return ([s for s in ctx.store.list(BackupSession, namespace)
                 if s.spec.invoker.name == name], ctx.config.spec.backup_history_limit)
    target = ctx.appbinding.name
    return ([s for s in ctx.store.list(RestoreSession, namespace)
             if s.spec.target.ref.name == target], ctx.settings.restore_history_limit)
