"""Drilling a physical snapshot: unpack and prepare it in a temporary directory on the
worker, start a throw-away server on it, check what can be checked, remove it all.

What can be checked: that the data directory prepares and a server opens it;
``CHECK TABLE`` on every table of every user database (the server reads each table's
pages and indexes: a damaged or missing tablespace fails, naming the table); the
rows, counted; and the user's assertions, with the one user database selected if there
is exactly one (else none: assertions name ``db.table``). A physical backup copies
files and never reads rows, so it records no row counts or digests: unlike a logical
drill, the counted rows are compared with nothing, and the report says so.

The temporary directory is removed whatever happens, after the server stopped; the
drill's ``Watchdog`` stops the unpack, the prepare and the server at its timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from workers import database
from workers.drill_checks import Server, check_tables, run_assertions
from workers.drill_server import throwaway_server
from workers.engines.physical import DATA_STREAM, physical_tools, prepare, unpack
from workers.repository import Repository
from workers.watchdog import Watchdog
from workflows.drills import DrillReport
from workflows.errors import IntegrityError, PrecheckFailed
from workflows.resources import Engine
from workflows.resources.drill import Assertion
from workflows.snapshots import Snapshot

log = logging.getLogger(__name__)

#: A drill's work directory in TMPDIR, and the file naming the worker process it is of.
WORK_PREFIX = "stashq-drill-"
OWNER_FILE = "owner.pid"
#: The note of a drill that counted rows it could not compare.
NOT_COMPARED = ("rows counted, not compared: a physical backup records no row counts "
                "or digests")


def drill_physical(repo: Repository, snapshot: Snapshot, assertions: Sequence[Assertion],
                   report: DrillReport, dog: Watchdog) -> None:
    """Fill ``report`` with what the snapshot's throw-away server shows; raise a
    ``StashQError`` if it cannot be unpacked, prepared or started."""
    stream = next((s for s in snapshot.streams if s.name == DATA_STREAM), None)
    if stream is None:
        raise IntegrityError(f'snapshot "{snapshot.id}" has no {DATA_STREAM} stream')
    engine = engine_of(snapshot)
    tools = physical_tools(engine)
    remove_dead_drills(Path(tempfile.gettempdir()))
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))  # 0700: the server's socket is here
    (work / OWNER_FILE).write_text(str(os.getpid()))
    try:
        data = work / "data"
        data.mkdir()
        unpack(tools.stream(), repo.read_stream(snapshot, stream), data, dog.watching)
        prepare(tools.backup(), data, [], dog.watching)
        with throwaway_server(engine, data, work, dog.watching) as connection:
            check_server(Server(connection, f'the throw-away server of snapshot "{snapshot.id}"'),
                         assertions, report, dog)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        log.info("drill directory %s removed", work)


def remove_dead_drills(tmp: Path) -> list[Path]:
    """Remove the directories of drills whose worker process is gone (killed before its
    ``finally``: a whole prepared data directory each); return them."""
    removed = []
    for work in tmp.glob(f"{WORK_PREFIX}*"):
        try:
            owner = int((work / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if owner == os.getpid() or _alive(owner):
            continue
        shutil.rmtree(work, ignore_errors=True)
        log.warning("removed %s, left by a drill whose worker (pid %d) died", work, owner)
        removed.append(work)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return True


def check_server(server: Server, assertions: Sequence[Assertion], report: DrillReport,
                 dog: Watchdog) -> None:
    with database.connect(server.connection, what=server.what) as conn:
        databases = database.user_databases(conn)
    found = check_tables(server, databases, dog)
    report.tables, report.rows = found.tables, found.rows
    report.failures += found.failures
    report.notes.append(NOT_COMPARED)
    selected = databases[0] if len(databases) == 1 else None
    report.failures += run_assertions(server, selected, assertions, dog)


def engine_of(snapshot: Snapshot) -> Engine:
    try:
        return Engine(snapshot.engine)
    except ValueError:
        raise PrecheckFailed(f'snapshot "{snapshot.id}": engine "{snapshot.engine}" is not '
                             "one StashQ knows") from None
