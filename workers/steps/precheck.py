"""pre-check: everything a session needs is there, before anything is written.

Checks, each failing with its own message: the references resolve (configuration,
repository, AppBinding, Secrets, Task), the database accepts the AppBinding's
credentials, its flavor and version match the Task, the client binaries are installed,
and the repository is reachable and writable (backup) or holds the snapshot (restore),
and the password opens an encrypted repository (or no password is set for a plain one).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from workers import database
from workers.context import StepContext
from workers.engines import ServerInfo
from workers.steps.session import session_step, set_status
from workflows.errors import PrecheckFailed, StorageError

log = logging.getLogger(__name__)


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
            ctx.repo.resolve_snapshot(ctx.session.snapshot)  # type: ignore[union-attr]
    except StorageError as e:
        raise type(e)(f'Repository "{ctx.repository.name}": {e}') from e
    return server


@session_step("stashq.precheck")
def precheck(ctx: StepContext, params: Mapping[str, str]) -> None:
    """Verify (the frame marked the session Running when it claimed it)."""
    server = run_precheck(ctx)
    set_status(ctx, {"server": {"flavor": server.flavor.value, "version": server.version_string},
                     "conditions": {"PrecheckPassed": "True"}})
