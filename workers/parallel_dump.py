"""Parallel mode of the logical backup: several dump clients, one snapshot, a stream each.

One ``mariadb-dump`` is bound by its own CPU (one core), so a parallel dump runs several,
each reading a share of the tables (``workflows/parallel_plan.py``) into a stream of its
own, all uploaded at once. They are started while commits are blocked and the block is
lifted once each has its transaction open (``workers/shared_snapshot.py``), so together
they read one moment, as one ``--single-transaction`` dump does. C clients rather than
rows read through pymysql: pymysql took 4.3 s only to fetch the rows that mariadb-dump
fetched and formatted in 0.85 s (docs/benchmarks.md).

The streams, in the order the manifest lists them and restore loads them:

    schema.sql.zst     schema     databases and tables, no trigger, no view
    data-NN.sql.zst    data       rows of a share of the tables, loaded at once
    post-data.sql.zst  post-data  routines, events, triggers: after the rows, or every
                                  restored row would fire its triggers
    views.sql.zst      post-data  views, after the routines they may call

Each stream is a complete dump in the single dump's format (one database: no CREATE
DATABASE or USE, so it restores under another name). Any failure stops every client
and removes what was stored: no manifest, no stream left behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from workers import database
from workers.context import StepContext
from workers.dump_rows import RowCounter
from workers.engines import EngineAdapter
from workers.pauses import pause_at
from workers.process import ClientProcess
from workers.shared_snapshot import commits_blocked
from workers.streaming import PROGRESS_INTERVAL_S, StreamStats
from workflows.errors import DumpFailed, InvalidResource
from workflows.gtids import Coordinates
from workflows.parallel_plan import DumpPart, TableSize, plan_parts, split_candidates
from workflows.resources import Engine
from workflows.snapshots import Stream

log = logging.getLogger(__name__)

Report = Callable[[StreamStats], None]
#: Given a client's name, the check that its stream ended with the completion line.
CompletionCheck = Callable[[str], Report]
Name = tuple[str, str]  #: (database, table or view)
#: A dump's streams and the binlog coordinates of its snapshot (None: no binlog).
Dumped = tuple[tuple[Stream, ...], Coordinates | None]

SCHEMA_OPTIONS = ("--no-data", "--skip-triggers", "--skip-routines", "--skip-events")
DATA_OPTIONS = ("--no-create-info", "--no-create-db", "--skip-triggers", "--skip-routines",
                "--skip-events")
#: Two ranges of one table load at once: LOCK TABLES ... WRITE would serialise them.
RANGE_OPTIONS = ("--skip-add-locks",)
POST_DATA_OPTIONS = ("--no-data", "--no-create-info", "--no-create-db", "--triggers",
                     "--routines", "--events")
VIEW_OPTIONS = ("--no-data", "--no-create-db", "--skip-triggers", "--skip-routines",
                "--skip-events")
#: zstd threads per stream: none, the streams themselves are the parallelism (each
#: multithreaded compressor cost ~10 MiB and a thread per core, for no speed on 2 cores).
STREAM_ZSTD_THREADS = 0
#: Plans made again when tables come or go between planning and the snapshot.
PLAN_ATTEMPTS = 3


@dataclass(frozen=True)
class DumpJob:
    """One dump client and the stream it writes."""

    name: str
    role: str
    argv: list[str]
    tables: tuple[str, ...] = ()
    where: str | None = None


@dataclass(frozen=True)
class Commands:
    """Command lines of a parallel dump's clients, in the single dump's format: for one
    database, objects named after it; for several, ``--databases`` and ``--ignore-table``
    for every object of those databases that the client must not read."""

    engine: EngineAdapter
    cnf: Path
    databases: tuple[str, ...]
    objects: frozenset[Name]  #: every table and view of ``databases``
    extra: tuple[str, ...]

    def command(self, options: Sequence[str], dbs: Sequence[str],
                only: Sequence[Name] | None) -> list[str]:
        """``options`` over ``dbs``, restricted to ``only`` (None: everything)."""
        if len(self.databases) == 1:
            names = [name for _, name in only] if only is not None else []
            return [*self.engine.dump_args(self.cnf, self.databases, [*options, *self.extra]),
                    *names]
        keep = set(only) if only is not None else self.objects
        ignored = [f"--ignore-table={db}.{name}" for db, name in sorted(self.objects - keep)
                   if db in dbs]
        return self.engine.dump_args(self.cnf, dbs, ["--databases", *options, *ignored,
                                                     *self.extra])

    def data(self, index: int, part: DumpPart) -> DumpJob:
        names = [(t.database, t.name) for t in part.tables]
        where = part.key_range.where() if part.key_range else None
        options = [*DATA_OPTIONS, *(RANGE_OPTIONS + (f"--where={where}",) if where else ())]
        dbs = sorted({db for db, _ in names})
        return DumpJob(f"data-{index:02d}.sql.zst", "data", self.command(options, dbs, names),
                       tuple(f"{db}.{name}" for db, name in names), where)

    def metadata(self, tables: Sequence[TableSize], views: Sequence[Name]) -> list[DumpJob]:
        """The schema job, then the post-data jobs."""
        base = [(t.database, t.name) for t in tables]
        jobs = [DumpJob("schema.sql.zst", "schema",
                        self.command(SCHEMA_OPTIONS, self.databases, base)),
                DumpJob("post-data.sql.zst", "post-data",
                        self.command(POST_DATA_OPTIONS, self.databases, None))]
        if views:
            jobs.append(DumpJob("views.sql.zst", "post-data",
                                self.command(VIEW_OPTIONS, self.databases, views)))
        return jobs


class Clients:
    """The running dump clients; once stopped, no new one starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: list[ClientProcess] = []
        self._stopped = False

    def start(self, argv: Sequence[str]) -> ClientProcess:
        with self._lock:
            if self._stopped:
                raise DumpFailed("the parallel dump was aborted")
            client = ClientProcess(argv)
            self._clients.append(client)
        log.info("started %s (pid %d)", client.name, client.pid)
        return client

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            clients = list(self._clients)
        for client in clients:
            client.stop()


class SummedProgress:
    """Progress of several streams reported as one, at most once per interval."""

    def __init__(self, report: Report) -> None:
        self._report, self._lock = report, threading.Lock()
        self._stats: dict[str, StreamStats] = {}
        self._last = 0.0

    def of(self, name: str) -> Report:
        def update(stats: StreamStats) -> None:
            with self._lock:
                self._stats[name] = stats
                now = time.monotonic()
                if now - self._last < PROGRESS_INTERVAL_S:
                    return
                self._last = now
                total = StreamStats(raw_bytes=sum(s.raw_bytes for s in self._stats.values()),
                                    stored_bytes=sum(s.stored_bytes for s in self._stats.values()))
            self._report(total)
        return update


def dump_parallel(ctx: StepContext, cnf: Path, databases: Sequence[str], parallel: int, *,
                  level: int, extra: Sequence[str], report: Report,
                  completed: CompletionCheck) -> Dumped:
    """Dump ``databases`` with up to ``parallel`` data clients sharing one snapshot;
    ``completed(client)`` checks the end of each stream (the dump step's check). The
    binlog coordinates are read once, while commits are blocked: one for all streams."""
    what = f'AppBinding "{ctx.appbinding.name}"'
    if ctx.appbinding.engine is not Engine.MARIADB:  # mysqldump (GTID_PURGED per stream): untried
        raise InvalidResource(f"{what}: parallel dumps are supported for MariaDB only; "
                              "set parallel to 1", path="spec.task.params.parallel")
    for attempt in range(1, PLAN_ATTEMPTS + 1):
        with database.connect(ctx.connection, what=what) as conn:
            tables, views = database.schema_objects(conn, databases)
            bounds = {t.qualified: b for t in split_candidates(tables, parallel)
                      if (b := database.key_bounds(conn, t)) is not None}
        parts = plan_parts(tables, parallel, bounds)
        objects = frozenset([(t.database, t.name) for t in tables] + list(views))
        commands = Commands(ctx.engine, cnf, tuple(databases), objects, tuple(extra))
        log.info("parallel dump of %d table(s) in %d part(s): %s", len(tables), len(parts),
                 "; ".join(f"{len(p.tables)} table(s) ~{p.estimated_bytes >> 20} MiB"
                           + (f" where {p.key_range.where()}" if p.key_range else "")
                           for p in parts))
        dumped = _dump(ctx, commands, [commands.data(i, p) for i, p in enumerate(parts)],
                       commands.metadata(tables, views), level=level, report=report,
                       completed=completed)
        if dumped is not None:
            return dumped
        log.warning("tables changed while the parallel dump was planned (attempt %d of %d)",
                    attempt, PLAN_ATTEMPTS)
    raise DumpFailed(f"{what}: tables of {', '.join(databases)} kept changing while the "
                     "parallel dump was planned (DDL during the backup); try again later")


def _dump(ctx: StepContext, commands: Commands, data: list[DumpJob], metadata: list[DumpJob],
          *, level: int, report: Report, completed: CompletionCheck) -> Dumped | None:
    """Run every job; None, having started nothing, if the tables changed since planning."""
    what = f'AppBinding "{ctx.appbinding.name}"'
    progress, clients = SummedProgress(report), Clients()
    stored: list[Stream] = []  # appended by every thread: what a failure must remove

    def store(job: DumpJob, client: ClientProcess) -> list[Stream]:
        rows = RowCounter.of(commands.databases)
        stream = rows.recorded(ctx.repo.write_stream(
            ctx.ref.name, job.name, rows.tap(client.chunks(ctx.settings.dump_chunk_bytes)),
            level=level, threads=STREAM_ZSTD_THREADS, report=progress.of(job.name),
            check_end=completed(client.name)))
        stored.append(stream)
        return [stream.model_copy(update={"role": job.role, "tables": job.tables,
                                          "where": job.where})]

    def store_metadata(schema: ClientProcess) -> list[Stream]:
        streams = store(metadata[0], schema)
        for job in metadata[1:]:  # not part of the snapshot: schema objects are not MVCC
            streams += store(job, clients.start(job.argv))
        return streams

    futures: list[Future[list[Stream]]] = []
    with ThreadPoolExecutor(len(data) + 1, thread_name_prefix="stashq-dump") as pool:
        try:
            with commits_blocked(ctx.connection, commands.databases, what=what) as window:
                if window.objects() != commands.objects:
                    return None
                coordinates = window.coordinates()
                started = [clients.start(job.argv) for job in data]
                schema = clients.start(metadata[0].argv)
                futures = [pool.submit(store, job, client)
                           for job, client in zip(data, started, strict=True)]
                futures.insert(0, pool.submit(store_metadata, schema))
                window.confirm(started)
            pause_at(ctx.settings, "before_upload")
            return _collect(futures), coordinates
        except BaseException:
            clients.stop_all()
            wait(futures)
            _discard(stored, ctx)
            raise


def _collect(futures: list[Future[list[Stream]]]) -> tuple[Stream, ...]:
    """Every stream, schema first and post-data last; else the first failure (not the
    others' "killed by signal", which stopping them causes)."""
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    errors = [e for f in futures if f in done and (e := f.exception()) is not None]
    if errors:
        raise errors[0]  # the caller stops the others and removes what they stored
    metadata, *data = (f.result() for f in futures)
    streams = [metadata[0], *(s for ss in data for s in ss), *metadata[1:]]
    return tuple(streams)


def _discard(streams: list[Stream], ctx: StepContext) -> None:
    """Delete the streams a failed dump stored (best effort: prune removes the rest)."""
    for stream in streams:
        try:
            ctx.repo.discard_stream(stream)
        except Exception as e:
            log.warning("could not remove stream %s of a failed dump: %s", stream.key, e)
