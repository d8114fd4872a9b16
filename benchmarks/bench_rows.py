"""`make bench-rows`: what counting rows in the dump stream costs a backup.

The restore drills need each table's row count and digest as dumped
(`workflows/row_digests.py`); the dump step computes them from the client's output on
its way to the repository. This times the dump step's byte pipeline (the dump client →
read ahead → zstd → sha256 → a local-file repository) with and without that tap, on
the same dump, interleaved, and prints the wall-time ratio (counted / not counted) and
the CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    MIB,
    buffer_pool_mib,
    client_options,
    count_dump_bytes,
    load_database,
    rotations,
    rows_for,
    start_servers,
)
from workers.dump_rows import RowCounter
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS
from workers.process import ClientProcess
from workers.repository.streams import write_stream
from workers.storage.local import LocalStorage
from workflows.settings import Settings

DATABASE = "bench_rows"
PIPELINES = ("plain", "counted")


def backup(argv: list[str], storage: LocalStorage, key: str, *, counted: bool,
           settings: Settings) -> int:
    """One pipeline run; the rows counted (0 when not counting)."""
    client = ClientProcess(argv)
    rows = RowCounter.of([DATABASE])
    chunks = client.chunks(settings.dump_chunk_bytes)
    try:
        stream = write_stream(storage, None, key, "dump.sql", rows.tap(chunks) if counted
                              else chunks, level=settings.zstd_level)
    finally:
        client.stop()
    return sum(t.rows for t in rows.recorded(stream).table_rows) if counted else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_rows",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--size-mib", type=int, default=256, help="dump size (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    args = parser.parse_args(argv)
    settings = Settings.from_env({})
    walls: dict[str, list[float]] = {p: [] for p in PIPELINES}
    cpus: dict[str, list[float]] = {p: [] for p in PIPELINES}
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-rows-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)
        mariadb, _, _, _ = start_servers(root, buffer_pool_mib(args.size_mib), exits)
        load_database(mariadb, DATABASE, rows_for(args.size_mib))
        cnf = exits.enter_context(client_options(mariadb))
        argv_dump = ["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                     DATABASE]
        size = count_dump_bytes(" ".join(argv_dump))
        storage = LocalStorage(root / "repo")
        counted_rows = 0
        for run, pipeline in rotations(list(PIPELINES), args.runs):
            cpu0, wall0 = _cpu(), time.perf_counter()
            rows = backup(argv_dump, storage, f"run-{run}-{pipeline}",
                          counted=pipeline == "counted", settings=settings)
            walls[pipeline].append(time.perf_counter() - wall0)
            cpus[pipeline].append(_cpu() - cpu0)
            counted_rows = max(counted_rows, rows)
        print(f"dump {size / MIB:,.0f} MiB, {counted_rows:,} rows; median of {args.runs} runs")
        for p in PIPELINES:
            print(f"{p:<8} wall {statistics.median(walls[p]):6.2f} s   "
                  f"this process CPU {statistics.median(cpus[p]):6.2f} s")
        ratio = statistics.median(walls["counted"]) / statistics.median(walls["plain"])
        print(f"counted / plain wall time: {ratio:.3f}")
    return 0


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
