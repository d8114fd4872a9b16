"""Running a restore drill on one snapshot: restore into scratch databases, count the
restored rows the way the backup counted them, run the assertions, drop the scratch.
(A physical snapshot goes to a throw-away server instead: ``workers/physical_drills.py``.)

The restored rows are counted by dumping the scratch databases again with the same
client options (``CONSISTENT_DUMP_OPTIONS``) and passing that dump through the same
``RowDigester`` as the backup did: the two counts are of the same text, so they agree
exactly when every row came back as it was dumped. The scratch databases are dropped
whatever happens (and dropped first if a drill killed mid-way left them). A drill's
``timeoutSeconds`` is kept by a ``Watchdog``: each client process and query of the drill
is registered with it while it runs, and stopped when the time is up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from workers import database
from workers.drill_checks import Server, run_assertions, run_sql
from workers.engines import ConnectionInfo, EngineAdapter, engine_for
from workers.engines.base import defaults_file
from workers.physical_drills import drill_physical
from workers.process import ClientProcess
from workers.repository import Repository
from workers.watchdog import Watchdog
from workflows.drills import DrillReport, rename_databases
from workflows.errors import StashQError
from workflows.resources import AppBinding
from workflows.resources.drill import Assertion, scratch_name
from workflows.row_digests import RowDigester, combine, compare_tables, digest_text
from workflows.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Bytes read from the re-dump per read.
REDUMP_CHUNK_BYTES = 1 * 2**20


@dataclass(frozen=True)
class Scratch:
    """Where a drill restores: the scratch server and the names' prefix."""

    binding: AppBinding
    connection: ConnectionInfo
    prefix: str

    @property
    def engine(self) -> EngineAdapter:
        return engine_for(self.binding.engine)

    @property
    def what(self) -> str:
        return f'AppBinding "{self.binding.name}"'

    @property
    def server(self) -> Server:
        return Server(self.connection, self.what)


def drill_snapshot(repo: Repository, snapshot: Snapshot, scratch: Scratch,
                   assertions: Sequence[Assertion], configuration: str,
                   dog: Watchdog | None = None) -> DrillReport:
    """Restore, check and drop; the report names every failure (never raises for one).
    ``dog`` stops the drill when its time is up (None: no time limit)."""
    started = time.monotonic()
    dog = dog or Watchdog(None, "the drill")
    names = {db: scratch_name(scratch.prefix, db) for db in snapshot.databases}
    report = DrillReport(snapshot.id, configuration, tuple(names.values()))
    try:
        dog.check()
        if snapshot.kind == "physical":
            drill_physical(repo, snapshot, assertions, report, dog)
        else:
            drill_logical(repo, snapshot, scratch, names, assertions, report, dog)
    except StashQError as e:
        report.failures.append(e.reason)
    except Exception as e:  # a bug: reported as a failure of the drill, with a traceback
        log.exception("drill of %s failed unexpectedly", snapshot.id)
        report.failures.append(f"unexpected {type(e).__name__}; the log has the details")
    report.seconds = time.monotonic() - started
    log.info("drill of snapshot %s: %s in %.1f s%s", snapshot.id,
             "passed" if report.passed else "FAILED", report.seconds,
             "".join(f"\n  {f}" for f in report.failures))
    return report


def drill_logical(repo: Repository, snapshot: Snapshot, scratch: Scratch,
                  names: dict[str, str], assertions: Sequence[Assertion],
                  report: DrillReport, dog: Watchdog) -> None:
    if not names:
        raise StashQError("a logical snapshot without named databases cannot be drilled "
                          "yet (its databases are known only by restoring it)")
    with scratch_databases(scratch, list(names.values()), dog):
        restore_into(repo, snapshot, scratch, names, dog)
        check_rows(snapshot, scratch, names, report, dog)
        report.failures += run_assertions(scratch.server, next(iter(names.values())),
                                          assertions, dog)


@contextmanager
def scratch_databases(scratch: Scratch, names: list[str], dog: Watchdog) -> Iterator[None]:
    """The scratch databases, new and empty for the ``with`` block, dropped after it
    (also after a timeout: the drop is not watched)."""
    run_sql(scratch.server,
            [f"DROP DATABASE IF EXISTS {database.quote_identifier(n)}" for n in names]
            + [f"CREATE DATABASE {database.quote_identifier(n)}" for n in names], dog)
    try:
        yield
    finally:
        try:
            run_sql(scratch.server, [f"DROP DATABASE IF EXISTS {database.quote_identifier(n)}"
                                     for n in names])
        except Exception as e:  # the verdict stands; the next drill drops them first
            log.warning("scratch databases %s not dropped: %s", ", ".join(names), e)


def restore_into(repo: Repository, snapshot: Snapshot, scratch: Scratch,
                 names: dict[str, str], dog: Watchdog) -> None:
    """Every stream, in manifest order (schema, data, post-data), into the scratch."""
    single = next(iter(names.values())) if len(names) == 1 else None
    with defaults_file(scratch.connection) as cnf:
        argv = scratch.engine.restore_args(cnf, single, [])
        for stream in snapshot.streams:
            chunks: Iterable[bytes] = repo.read_stream(snapshot, stream)
            client = ClientProcess(argv, stdin_pipe=True)
            try:
                with dog.watching(client.stop):
                    client.feed(chunks if single else rename_databases(chunks, names))
            finally:
                client.stop()


def restored_rows(scratch: Scratch, names: dict[str, str],
                  dog: Watchdog) -> dict[str, tuple[int, str]]:
    """Rows per source table (``db.table``) in the scratch, counted from a new dump."""
    scratch_dbs = list(names.values())
    back = {new: old for old, new in names.items()}
    digester = RowDigester(scratch_dbs[0] if len(scratch_dbs) == 1 else "")
    with defaults_file(scratch.connection) as cnf:
        client = ClientProcess(scratch.engine.dump_args(cnf, scratch_dbs, []))
        try:
            with dog.watching(client.stop):
                for _ in digester.tap(client.chunks(REDUMP_CHUNK_BYTES)):
                    pass
        finally:
            client.stop()
    counts = {}
    for table, count in digester.finish().items():
        db, _, name = table.partition(".")
        counts[f"{back.get(db, db)}.{name}"] = (count.rows, digest_text(count.digest))
    return counts


def check_rows(snapshot: Snapshot, scratch: Scratch, names: dict[str, str],
               report: DrillReport, dog: Watchdog) -> None:
    recorded = combine((t.table, t.rows, t.digest) for s in snapshot.streams
                       for t in s.table_rows)
    if not snapshot.rows_counted:
        log.warning("snapshot %s was taken before rows were counted: only its restore and "
                    "the assertions are checked", snapshot.id)
    restored = restored_rows(scratch, names, dog)
    report.tables, report.rows = len(restored), sum(rows for rows, _ in restored.values())
    if snapshot.rows_counted:
        report.failures += compare_tables(recorded, restored)
