"""What a finished session leaves in its history, applied where a session finishes (its
last step, its failure, the sweeper): the history limit, and the configuration's
``status.lastBackup``.

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
from collections.abc import Mapping, Sequence
from typing import Any

from workers.context import StepContext
from workflows.phases import is_newer_backup, last_backup
from workflows.resources import BackupConfiguration, BackupSession, RestoreSession
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


#: Times a configuration's ``lastBackup`` is read and written again when another session
#: wrote it in between.
LAST_BACKUP_ATTEMPTS = 3


def record_last_backup(ctx: StepContext, status: Mapping[str, Any]) -> None:
    """Show a backup session that ended with ``status`` in its configuration's status,
    unless a later one is shown already. Best effort: a failure is logged."""
    if ctx.ref.kind != "BackupSession":
        return
    try:
        config = ctx.config
        if config is None:
            return
        mine = last_backup(ctx.ref.name, status)
        for _ in range(LAST_BACKUP_ATTEMPTS):
            shown = ctx.store.get(BackupConfiguration, config.name, config.namespace).status \
                .get("lastBackup")
            if not is_newer_backup(mine, shown):
                return
            if ctx.store.patch_status_where(BackupConfiguration, config.name, config.namespace,
                                            {"lastBackup": shown}, {"lastBackup": mine}):
                return
    except Exception as e:
        log.warning("last backup of %s not shown on its configuration: %s: %s", ctx.ref,
                    type(e).__name__, e)
