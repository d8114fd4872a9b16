"""Restoring a parallel snapshot: its streams in the order their roles require.

The schema streams first (tables exist before rows arrive), then the data streams,
several SQL clients at once (one server thread each: what makes a restore faster than
one client), then the post-data streams (routines, events, triggers, views), so no
trigger fires for a restored row. A failing stream stops the other clients at once
and the restore fails with that stream's error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from workers.context import StepContext
from workers.engines.base import defaults_file
from workers.parallel_dump import SummedProgress
from workers.process import ClientProcess
from workers.streaming import StreamStats
from workflows.errors import DumpFailed
from workflows.params import RestoreParams
from workflows.snapshots import Snapshot, Stream

log = logging.getLogger(__name__)

Report = Callable[[StreamStats], None]


def is_parallel(snapshot: Snapshot) -> bool:
    """Whether the snapshot's streams carry roles (a parallel dump's)."""
    return any(s.role is not None for s in snapshot.streams)


class _Loader:
    """Feeds streams to SQL clients; once stopped, kills them and starts no more."""

    def __init__(self, ctx: StepContext, snapshot: Snapshot, argv: Sequence[str],
                 report: Report) -> None:
        self._ctx, self._snapshot, self._argv = ctx, snapshot, list(argv)
        self._progress = SummedProgress(report)
        self._lock = threading.Lock()
        self._clients: list[ClientProcess] = []
        self._stopped = False

    def load(self, stream: Stream) -> None:
        with self._lock:
            if self._stopped:
                raise DumpFailed("the restore was aborted")
            client = ClientProcess(self._argv, stdin_pipe=True)
            self._clients.append(client)
        try:  # a corrupt stream raises inside feed, before the client's input is closed
            client.feed(self._ctx.repo.read_stream(self._snapshot, stream,
                                                   self._progress.of(stream.name)))
        finally:
            client.stop()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            clients = list(self._clients)
        for client in clients:
            client.stop()


def restore_parallel(ctx: StepContext, snapshot: Snapshot, database: str | None,
                     params: RestoreParams, report: Report) -> None:
    """Load the snapshot's streams into ``database`` (None: the databases they name);
    param ``parallel``: data streams loaded at once (empty: all of them)."""
    data = [s for s in snapshot.streams if s.role == "data"]
    parallel = params.parallel or max(len(data), 1)
    with defaults_file(ctx.connection) as cnf:
        argv = ctx.engine.restore_args(cnf, database, params.args)
        loader = _Loader(ctx, snapshot, argv, report)
        for stream in (s for s in snapshot.streams if s.role == "schema"):
            loader.load(stream)
        _load_at_once(loader, data, parallel)
        for stream in (s for s in snapshot.streams if s.role == "post-data"):
            loader.load(stream)
    log.info("restored %d data stream(s), %d at a time", len(data), parallel)


def _load_at_once(loader: _Loader, streams: Sequence[Stream], parallel: int) -> None:
    if not streams:
        return
    with ThreadPoolExecutor(min(parallel, len(streams)),
                            thread_name_prefix="stashq-restore") as pool:
        futures = [pool.submit(loader.load, s) for s in streams]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in futures if f in done and (e := f.exception()) is not None]
        if errors:
            loader.stop()
            wait(futures)
            raise errors[0]
