"""pre-check: everything a session needs is there, before anything is written.

Checks, each failing with its own message: the references resolve (configuration,
repository, AppBinding, Secrets, Task), the database accepts the AppBinding's
credentials, its flavor and version match the Task, the client binaries are installed,
and the repository is reachable and writable (backup) or holds the snapshot (restore),
and the password opens an encrypted repository (or no password is set for a plain one).
A restore also finds the databases it would write new or empty, unless the session says
to overwrite them, and records the snapshot it chose (``latest`` is resolved once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from workers import database
from workers.context import StepContext, pinned_snapshot
from workers.engines import ServerInfo
from workers.steps.session import session_step, set_status
from workflows.errors import PrecheckFailed, StorageError
from workflows.params import NoParams, RestoreParams
from workflows.resources import RestoreSession
from workflows.restores import refuse_overwrite, written_databases
from workflows.snapshots import Snapshot

if TYPE_CHECKING:
    from pymysql import Connection

log = logging.getLogger(__name__)

#: The step whose params (``database``) say where a logical restore writes.
RESTORE_STEP = "stashq.restore_stream"


def check_server(ctx: StepContext, server: ServerInfo) -> None:
    plan, binding = ctx.plan, ctx.appbinding
    if not ctx.engine.accepts(server):
        raise PrecheckFailed(f'AppBinding "{binding.name}" is type {binding.spec.type}, but the '
                             f"server is {server.flavor.value} {server.version_string}")
    if plan.engine is not None and plan.engine is not binding.engine:
        raise PrecheckFailed(f'Task "{plan.task}" is for {plan.engine.value}, but AppBinding '
                             f'"{binding.name}" is {binding.engine.value}')
    if plan.server_versions:
        try:
            ok = Version(server.version) in SpecifierSet(plan.server_versions)
        except InvalidVersion:
            ok = False
        if not ok:
            raise PrecheckFailed(f'Task "{plan.task}" supports server versions '
                                 f"{plan.server_versions}; the server is {server.version_string}")


def run_precheck(ctx: StepContext) -> ServerInfo:
    what = f'AppBinding "{ctx.appbinding.name}"'
    ctx.plan  # noqa: B018 - resolves the Task now, so a bad one fails first
    with database.connect(ctx.connection, what=what, wait_s=ctx.settings.db_wait_s) as conn:
        server = database.server_info(conn)
        check_server(ctx, server)
        try:
            if ctx.is_backup:
                ctx.engine.dump_client()
                ctx.repo.check_writable()
                ctx.repo.cipher  # noqa: B018 - a missing or wrong password fails now, not after the dump
            else:
                ctx.engine.restore_client()
                check_restore_target(ctx, conn, ctx.restore_snapshot)
        except StorageError as e:
            raise type(e)(f'Repository "{ctx.repository.name}": {e}') from e
    return server


def check_restore_target(ctx: StepContext, conn: Connection, snapshot: Snapshot) -> None:
    """The databases the restore writes are new or empty, or the session says to
    overwrite them. Not asked again when the session runs again (re-queued): what they
    hold then may be its own first run's work."""
    session = ctx.session
    assert isinstance(session, RestoreSession)
    if pinned_snapshot(session) is not None:
        log.info("pre-check passed before; the target databases are not checked again")
        return
    params = ctx.plan.typed_params(RESTORE_STEP)
    assert isinstance(params, RestoreParams)
    names = written_databases(snapshot, params.database)
    refuse_overwrite(database.table_counts(conn, names), target=ctx.appbinding.name,
                     overwrite=session.spec.target.overwrite,
                     renamable=len(snapshot.databases) == 1)


@session_step("stashq.precheck")
def precheck(ctx: StepContext, params: NoParams) -> None:
    """Verify (the frame marked the session Running when it claimed it)."""
    server = run_precheck(ctx)
    chosen: dict[str, object] = {} if ctx.is_backup else {
        "snapshot": {"name": ctx.restore_snapshot.id}}
    recovery = None if ctx.is_backup else ctx.recovery
    if recovery is not None:
        chosen["pointInTime"] = {"point": str(recovery.point), "fromGtid": recovery.start_state,
                                 "segments": len(recovery.segments)}
    set_status(ctx, {"server": {"flavor": server.flavor.value, "version": server.version_string},
                     "conditions": {"PrecheckPassed": "True"}, **chosen})
