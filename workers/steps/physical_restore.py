"""physical restore: repository → sha256 + zstd → ``mbstream -x`` into a data directory →
``mariadb-backup --prepare``; one such step per replica, in parallel.

StashQ does not run database servers: it leaves a data directory per replica that a
server can start on. For a Galera snapshot it also writes ``grastate.dat`` at the
position the prepared data stands at (``--prepare`` reports it), with
``safe_to_bootstrap: 1`` on replica 0 only: start that one with
``--wsrep-new-cluster``, then the others, which join it without a state transfer since
they hold the same data at the same position.

A data directory must be empty or new: a database's files are never deleted. The
step leaves a marker file naming its session; a redelivered step finds its finished
directory and stops, or clears a directory it half wrote itself and starts again.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import shutil
import time
from pathlib import Path
from typing import Any

from workers.context import StepContext
from workers.engines import galera, physical
from workers.engines.physical import DATA_STREAM, physical_tools, prepare
from workers.steps.dump_upload import report_progress
from workers.steps.physical_precheck import GALERA_METHOD
from workers.steps.session import DATA_QUEUE, session_step, set_status
from workflows.errors import IntegrityError, PrecheckFailed, StashQError
from workflows.params import PhysicalRestoreParams
from workflows.phases import Phase
from workflows.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Left in a restored data directory: which session wrote it, and whether it finished.
MARKER = ".stashq-restore.json"
def claim(directory: Path, session: str) -> dict[str, Any] | None:
    """Make ``directory`` ours to fill; return its marker if this session finished it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    marker = _read_marker(directory)
    if marker.get("session") == session:
        if marker.get("state") == "done":
            return marker
        for entry in directory.iterdir():  # our own half-written restore: start over
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    elif any(directory.iterdir()):
        count = sum(1 for _ in directory.iterdir())
        raise PrecheckFailed(f"data directory {directory} is not empty ({count} entries); a "
                             "physical restore writes only into an empty or new directory and "
                             "never deletes a database's files: move them away first")
    _write_marker(directory, {"session": session, "state": "unpacking"})
    return None


def _read_marker(directory: Path) -> dict[str, Any]:
    try:
        value = json.loads((directory / MARKER).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_marker(directory: Path, value: dict[str, Any]) -> None:
    tmp = directory / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(value))
    tmp.replace(directory / MARKER)


def unpack(ctx: StepContext, snapshot: Snapshot, directory: Path) -> None:
    """Stream the data directory stream into ``mbstream -x``, verifying it on the way."""
    stream = next((s for s in snapshot.streams if s.name == DATA_STREAM), None)
    if stream is None:
        raise IntegrityError(f'snapshot "{snapshot.id}" has no {DATA_STREAM} stream')
    tool = physical_tools(ctx.appbinding.engine).stream()
    physical.unpack(tool, ctx.repo.read_stream(snapshot, stream,
                                               report_progress(ctx, time.monotonic())),
                    directory)


def finish_galera(directory: Path, position: tuple[str, int] | None, replica: int,
                  snapshot: Snapshot) -> str:
    """Write grastate.dat at the prepared data's position; replica 0 may bootstrap."""
    if position is None:
        raise IntegrityError(f'snapshot "{snapshot.id}": the prepared data directory reports no '
                             "Galera (WSREP) position; it cannot rejoin a cluster safely")
    galera.write_grastate(directory, *position, safe_to_bootstrap=replica == 0)
    return f"{position[0]}:{position[1]}"


def restore_replica(ctx: StepContext, params: PhysicalRestoreParams) -> dict[str, Any]:
    replica = params.replica
    directory = Path(params.directory(target=ctx.appbinding.name, session=ctx.ref.name,
                                      namespace=ctx.ref.namespace))
    snapshot = ctx.restore_snapshot
    done = claim(directory, str(ctx.ref))
    if done is not None:
        log.info("replica %d already restored into %s", replica, directory)
        return dict(done["status"])
    started = time.monotonic()
    unpack(ctx, snapshot, directory)
    position = prepare(physical_tools(ctx.appbinding.engine).backup(), directory,
                       list(params.prepare_args))
    status: dict[str, Any] = {"dataDir": str(directory), "phase": Phase.SUCCEEDED.value,
                              "snapshot": snapshot.id, "bootstrap": replica == 0}
    if snapshot.method == GALERA_METHOD:
        status["position"] = finish_galera(directory, position, replica, snapshot)
    if owner := params.owner:
        chown_tree(directory, owner)
    status["processingTimeSeconds"] = round(time.monotonic() - started, 3)
    _write_marker(directory, {"session": str(ctx.ref), "state": "done", "status": status})
    return status


def chown_tree(directory: Path, owner: str) -> None:
    """``chown -R user[:group]``, as a server running as that user needs."""
    user, _, group = owner.partition(":")
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
        for root, dirs, files in os.walk(directory):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, uid, gid, follow_symlinks=False)
    except (KeyError, PermissionError) as e:
        raise PrecheckFailed(f'param "owner" is "{owner}": {e}') from e


@session_step("stashq.physical_restore", queue=DATA_QUEUE)
def physical_restore(ctx: StepContext, params: PhysicalRestoreParams) -> None:
    """Restore the session's physical snapshot into this replica's data directory."""
    replica = str(params.replica)
    try:
        status = restore_replica(ctx, params)
    except StashQError as e:
        raise type(e)(f"replica {replica}: {e}") from e
    patch: dict[str, Any] = {"replicas": {replica: status},
                             "snapshot": {"name": status["snapshot"]}}
    if replica == "0":
        patch["bootstrap"] = {"replica": 0, "dataDir": status["dataDir"],
                              "position": status.get("position")}
    set_status(ctx, patch)
    log.info("replica %s restored into %s", replica, status["dataDir"])
