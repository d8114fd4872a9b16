"""`make bench-stream`: StashQ's byte pipeline alone, to see where a backup's time goes.

`make bench` times whole sessions; this times the one path every backup's bytes take
(`workers.repository.streams.write_stream`: read ahead, zstd, sha256, store) in this process,
without Celery, Redis or a CLI, into three sinks, against the shell pipelines, on the
same dump, interleaved:

- `mariadb-dump > /dev/null`, `| zstd -1 -T0 > file` (the baselines of `make bench`);
- StashQ into a sink that only counts (the pipeline's own cost);
- StashQ into a local-file repository (plus the write and its fsync);
- StashQ into the S3 server (plus the upload and the server, on the same cores).

Wall seconds and CPU seconds per process: this process (StashQ's pipeline), its
children (the dump client, zstd), mariadbd and the S3 server.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shlex
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import cast

from benchmarks.common import (
    MIB,
    Meter,
    buffer_pool_mib,
    client_options,
    count_dump_bytes,
    load_database,
    recreate,
    restore_mismatch,
    rotations,
    rows_for,
    run_shell,
    start_servers,
    table_checksums,
)
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS, RESTORE_OPTIONS
from workers.process import ClientProcess
from workers.repository.streams import read_stream, write_stream
from workers.storage.base import Storage
from workers.storage.local import LocalStorage
from workers.storage.s3 import PART_BYTES, PARTS_IN_FLIGHT, S3Storage
from workflows.settings import Settings
from workflows.snapshots import Stream

DATABASE = "bench_stream"
PIPELINES = ("raw", "zstd", "null", "local", "s3")
RESTORES = ("load", "unzstd", "from-s3")
RESTORED = "bench_stream_restored"
LABELS = {"load": "mariadb < dump.sql", "unzstd": "zstd -dc dump.sql.zst | mariadb",
          "from-s3": "StashQ pipeline S3 server -> mariadb",
          "raw": "mariadb-dump > /dev/null", "zstd": "| zstd -{level} -T0 > file",
          "null": "StashQ pipeline -> counting sink", "local": "StashQ pipeline -> local repo",
          "s3": "StashQ pipeline -> S3 server"}


class CountingSink:
    """A storage that only counts what reaches it: the pipeline's cost without a sink's."""

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        return sum(len(chunk) for chunk in chunks)


@dataclass
class Timed:
    pipeline: str
    wall_s: float
    self_cpu_s: float  #: this process: StashQ's pipeline threads
    child_cpu_s: float  #: the dump client (and zstd for the shell pipeline)
    db_cpu_s: float
    s3_cpu_s: float


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def stash(argv: list[str], storage: Storage, key: str, level: int, chunk_bytes: int) -> Stream:
    client = ClientProcess(argv)
    try:
        return write_stream(storage, None, key, "dump.sql", client.chunks(chunk_bytes),
                            level=level)
    finally:
        client.stop()


def unstash(argv: list[str], storage: Storage, stream: Stream) -> None:
    client = ClientProcess(argv, stdin_pipe=True)
    try:
        client.feed(read_stream(storage, None, "bench", stream))
    finally:
        client.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--size-mib", type=int, default=256, help="dump size (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--part-mib", type=int, default=PART_BYTES // MIB,
                        help=f"S3 part size (default {PART_BYTES // MIB})")
    parser.add_argument("--parts-in-flight", type=int, default=PARTS_IN_FLIGHT,
                        help=f"S3 parts uploading at once (default {PARTS_IN_FLIGHT})")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = Settings.from_env({})
    level, chunk_bytes = settings.zstd_level, settings.dump_chunk_bytes
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-stream-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)
        print(f"starting servers in {root} ...", flush=True)
        mariadb, _, s3, _ = start_servers(root, buffer_pool_mib(args.size_mib), exits)
        load_database(mariadb, DATABASE, rows_for(args.size_mib))
        cnf = exits.enter_context(client_options(mariadb))
        argv_dump = ["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                     DATABASE]
        dump = shlex.join(argv_dump)
        dump_bytes = count_dump_bytes(dump)  # untimed: warms the caches
        source = table_checksums(mariadb, DATABASE)
        bucket = f"stream-{uuid.uuid4().hex[:12]}"
        s3.make_bucket(bucket)
        sinks: dict[str, Storage] = {
            "null": cast(Storage, CountingSink()),  # only put_stream is called
            "local": LocalStorage(root / "repo"),
            "s3": S3Storage(endpoint=s3.endpoint, bucket=bucket, prefix="bench",
                            region="us-east-1", access_key=s3.access_key,
                            secret_key=s3.secret_key, part_bytes=args.part_mib * MIB,
                            parts_in_flight=args.parts_in_flight)}
        meter = Meter(mariadb.running_pid() or -1, s3.running_pid() or -1)
        print(f"dump {dump_bytes / MIB:,.0f} MiB; zstd level {level}; S3 parts "
              f"{args.part_mib} MiB x {args.parts_in_flight} in flight", flush=True)
        timed: list[Timed] = []
        stored: dict[str, Stream] = {}

        def measure(pipeline: str, action: Callable[[], object]) -> None:
            before, (me0, kids0) = meter.read(), _cpu()
            action()
            m, (me1, kids1) = meter.run(pipeline, before), _cpu()
            timed.append(Timed(pipeline, m.wall_s, me1 - me0, kids1 - kids0,
                               m.db_cpu_s, m.s3_cpu_s))

        def backup(pipeline: str, run: int) -> None:
            if pipeline == "raw":
                run_shell(f"{dump} > /dev/null")
            elif pipeline == "zstd":
                run_shell(f"{dump} | zstd -{level} -T0 -q -f -o {root / 'out.zst'}")
            else:
                stored[pipeline] = stash(argv_dump, sinks[pipeline], f"run-{run}", level,
                                         chunk_bytes)

        for run, pipeline in rotations(list(PIPELINES), args.runs):
            measure(pipeline, partial(backup, pipeline, run))
        run_shell(f"{dump} > {root / 'dump.sql'} && zstd -{level} -q -f {root / 'dump.sql'}")
        argv_load = ["mariadb", f"--defaults-file={cnf}", *RESTORE_OPTIONS, RESTORED]
        load = shlex.join(argv_load)
        restores: dict[str, Callable[[], object]] = {
            "load": partial(run_shell, f"{load} < {root / 'dump.sql'}"),
            "unzstd": partial(run_shell, f"zstd -dc {root / 'dump.sql.zst'} | {load}"),
            "from-s3": lambda: unstash(argv_load, sinks["s3"], stored["s3"]),  # the last in S3
        }
        for _, pipeline in rotations(list(RESTORES), args.runs):
            recreate(mariadb, RESTORED)
            measure(pipeline, restores[pipeline])
            if bad := restore_mismatch(source, table_checksums(mariadb, RESTORED)):
                raise RuntimeError(f"{LABELS[pipeline]} restored other data: {bad}")
        report(timed, level)
    return 0


def report(timed: list[Timed], level: int) -> None:
    def med(pipeline: str, key: str) -> float:
        return float(statistics.median(getattr(t, key) for t in timed if t.pipeline == pipeline))

    raw = med("raw", "wall_s")
    print(f"\n{'backup, median of runs':<38} {'wall s':>7} {'x raw':>6} {'self CPU':>9} "
          f"{'dump/zstd CPU':>14} {'DB s':>5} {'S3 s':>5}")
    for p in PIPELINES:
        print(f"{LABELS[p].format(level=level):<38} {med(p, 'wall_s'):7.2f} "
              f"{med(p, 'wall_s') / raw:6.2f} {med(p, 'self_cpu_s'):9.2f} "
              f"{med(p, 'child_cpu_s'):14.2f} {med(p, 'db_cpu_s'):5.2f} {med(p, 's3_cpu_s'):5.2f}")
    load = med("load", "wall_s")
    print(f"\n{'restore, median of runs':<38} {'wall s':>7} {'x load':>6} {'self CPU':>9} "
          f"{'client CPU':>14} {'DB s':>5} {'S3 s':>5}")
    for p in RESTORES:
        print(f"{LABELS[p]:<38} {med(p, 'wall_s'):7.2f} {med(p, 'wall_s') / load:6.2f} "
              f"{med(p, 'self_cpu_s'):9.2f} {med(p, 'child_cpu_s'):14.2f} "
              f"{med(p, 'db_cpu_s'):5.2f} {med(p, 's3_cpu_s'):5.2f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
