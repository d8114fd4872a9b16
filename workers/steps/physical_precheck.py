"""physical pre-check: what a physical backup or restore needs, before anything is written.

Unlike the logical pre-check, a physical restore has no server to talk to: it writes a
data directory for a server that is stopped (or not created yet). So a restore checks
the snapshot (it exists and is physical) and the tools that unpack and prepare it; a
backup checks the server (credentials, flavor, version, as the logical pre-check does),
the backup tools (garbd for a cluster, mariadb-backup beside a standalone server), the
cluster's coordinates in the AppBinding, and that the repository is writable.
"""

from __future__ import annotations

import logging
import os

from workers import database
from workers.context import StepContext
from workers.engines import galera
from workers.engines.physical import physical_tools
from workers.steps.precheck import check_server
from workers.steps.session import session_step, set_status
from workflows.errors import InvalidResource, PrecheckFailed, StorageError
from workflows.params import NoParams, PhysicalBackupParams
from workflows.snapshots import Snapshot

log = logging.getLogger(__name__)

BACKUP_STEP = "stashq.physical_backup"
GALERA_METHOD = "galera-sst"


def check_backup(ctx: StepContext) -> dict[str, str]:
    """Server, tools, cluster coordinates and repository; the server facts for the status."""
    what = f'AppBinding "{ctx.appbinding.name}"'
    with database.connect(ctx.connection, what=what, wait_s=ctx.settings.db_wait_s) as conn:
        server = database.server_info(conn)
        with conn.cursor() as cursor:
            cursor.execute("SELECT @@datadir")
            (data_dir,) = cursor.fetchone()
    check_server(ctx, server)
    tools = physical_tools(ctx.appbinding.engine)
    params = ctx.plan.typed_params(BACKUP_STEP)
    if isinstance(params, PhysicalBackupParams) and params.method == GALERA_METHOD:
        galera.garbd_binary()
        galera.check_reachable(galera.cluster_of(ctx.appbinding, tools.sst_method))
    else:
        tools.backup()
        if not os.path.isdir(data_dir):
            raise PrecheckFailed(f"{what}: mariadb-backup reads the server's files, so it runs "
                                 f"beside the server; its data directory {data_dir} is not on "
                                 "this worker")
    try:
        ctx.repo.check_writable()
        ctx.repo.cipher  # noqa: B018 - a missing or wrong password fails now, not after the copy
    except StorageError as e:
        raise type(e)(f'Repository "{ctx.repository.name}": {e}') from e
    return {"flavor": server.flavor.value, "version": server.version_string}


def check_restore(ctx: StepContext) -> Snapshot:
    snapshot = ctx.restore_snapshot
    if snapshot.kind != "physical":
        raise InvalidResource(f'snapshot "{snapshot.id}" is a {snapshot.kind} snapshot; restore '
                              "it with a logical restore Task", path="spec.task.name")
    binding = ctx.appbinding
    if snapshot.engine != binding.engine.value:
        raise PrecheckFailed(f'snapshot "{snapshot.id}" holds a {snapshot.engine} data directory; '
                             f'AppBinding "{binding.name}" is {binding.engine.value}')
    tools = physical_tools(binding.engine)
    tools.stream()
    tools.backup()
    return snapshot


@session_step("stashq.physical_precheck")
def physical_precheck(ctx: StepContext, params: NoParams) -> None:
    """Verify (the frame marked the session Running when it claimed it)."""
    ctx.plan  # noqa: B018 - resolves the Task now, so a bad one fails first
    status: dict[str, object]
    if ctx.is_backup:
        status = {"server": check_backup(ctx)}
    else:
        snapshot = check_restore(ctx)
        status = {"server": {"flavor": snapshot.engine, "version": snapshot.server_version},
                  "snapshot": {"name": snapshot.id}}  # every replica restores this one
    set_status(ctx, status | {"conditions": {"PrecheckPassed": "True"}})
