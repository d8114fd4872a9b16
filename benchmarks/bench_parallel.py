"""`python -m benchmarks.bench_parallel`: StashQ's parallel mode against mydumper and
myloader, backup and restore, on the same data in the same run.

The issue's targets for the parallel mode are set against the tools that already dump
and load with several threads: a parallel StashQ backup to S3 no slower than
`mydumper -t 2` writing plain files to local disk, a parallel restore no slower than
`myloader -t 2`, and a single-stream restore within 1.1× of `mariadb < dump.sql`. The
servers, data, meters and worker are those of `make bench` (`benchmarks/common.py`);
StashQ runs at its default zstd level (1), as a user gets it. Every restore is checked
against the source (rows and CHECKSUM TABLE). A report, not a test: it exits 0 unless
something broke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from benchmarks.common import (
    MARIADB_LOAD,
    MIB,
    MYDUMPER,
    MYLOADER,
    PEER_THREADS,
    TABLES,
    Meter,
    Run,
    _interrupt,
    apply_resources,
    buffer_pool_mib,
    client_options,
    count_dump_bytes,
    directory_bytes,
    drop,
    env_assignments,
    fresh_worker_peak,
    load_database,
    meters,
    recreate,
    remove,
    rotations,
    rows_for,
    run_shell,
    start_servers,
    stashq_backup,
    stashq_env,
    stashq_restore,
    table_checksums,
    verify_restored,
)
from devstack.stack import Stack, Worker
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS

#: Dump size measured by default, MiB: "a few hundred MB".
DEFAULT_SIZE_MIB = 384
#: Dump clients of the parallel StashQ backups (param ``parallel``).
PARALLEL_DEGREES = (2, 4)
RESULTS_PATH = Path(__file__).with_name("results") / "parallel.json"

#: Backups; `{dump}` is the mariadb-dump command line StashQ runs.
BACKUPS = {"raw": "{dump} > /dev/null", "mydumper": MYDUMPER}
#: Restores into `{target}`, from the dump file and the mydumper directory made untimed.
RESTORES = {"mariadb": MARIADB_LOAD, "myloader": MYLOADER}
#: StashQ pipelines → the BackupConfiguration each runs.
STASHQ = {"stashq": "nightly", **{f"stashq-p{n}": f"parallel{n}" for n in PARALLEL_DEGREES}}
LABELS = {"raw": "mariadb-dump > /dev/null", "mydumper": f"mydumper -t {PEER_THREADS} (files)",
          "stashq": "stashq backup (1 stream)",
          **{f"stashq-p{n}": f"stashq backup parallel {n}" for n in PARALLEL_DEGREES},
          "mariadb": "mariadb < dump.sql", "myloader": f"myloader -t {PEER_THREADS}",
          "restore-stashq": "stashq restore (1 stream)",
          **{f"restore-stashq-p{n}": f"stashq restore of parallel {n}"
             for n in PARALLEL_DEGREES}}


@dataclass
class Result:
    size_mib: int
    rows: int
    dump_bytes: int
    runs: list[Run]       #: backups
    restores: list[Run]
    peak_rss_mib: dict[str, float]  #: per StashQ backup: a fresh worker group's largest VmHWM


def run_backup_baseline(pipeline: str, values: dict[str, str], out: Path, meter: Meter) -> Run:
    command = BACKUPS[pipeline].format(out=shlex.quote(str(out)), **values)
    run = meter.time(pipeline, lambda: run_shell(command))
    run.stored_bytes = directory_bytes(out)
    remove(out)
    return run


def memory_of(stack: Stack, namespace: str, pipeline: str) -> float:
    """Peak RSS (MiB) of one backup, alone in a fresh worker: VmHWM only grows, so the
    timed runs, which share a worker, cannot tell one pipeline's peak from another's."""
    _, peak = fresh_worker_peak(stack, lambda meter: stashq_backup(
        stack, namespace, STASHQ[pipeline], pipeline, meter))
    print(f"   peak RSS of {LABELS[pipeline]:<26} {peak:7.0f} MiB", flush=True)
    return peak


def run_restores(stack: Stack, namespace: str, values: dict[str, str],
                 snapshots: dict[str, str], meter: Meter, worker_meter: Meter) -> list[Run]:
    """Each restore once, into a fresh database, then checked against the source; StashQ
    restores the pipeline's last snapshot, a parallel one with as many loads as it has
    data streams (the default)."""
    target, runs = f"{values['db']}_restored", []
    source = table_checksums(stack.mariadb, values["db"])
    for pipeline in [*RESTORES, *(f"restore-{p}" for p in STASHQ)]:
        recreate(stack.mariadb, target)
        if pipeline in RESTORES:
            command = RESTORES[pipeline].format(target=target, **values)
            runs.append(meter.time(pipeline, partial(run_shell, command)))
        else:
            runs.append(stashq_restore(stack, namespace,
                                       snapshots[pipeline.removeprefix("restore-")], target,
                                       pipeline, worker_meter))
        verify_restored(stack.mariadb, target, source, LABELS[pipeline])
        print(f"   {LABELS[pipeline]:<30} {runs[-1].wall_s:7.2f} s", flush=True)
    drop(stack.mariadb, target)
    return runs


def bench(size_mib: int, runs: int, stack: Stack, cnf: Path, root: Path) -> Result:
    database, namespace = f"bench_{size_mib}mib", f"bench-parallel-{size_mib}mib"
    rows = rows_for(size_mib)
    print(f"\n== {size_mib} MiB: loading {TABLES} x {rows:,} rows ...", flush=True)
    load_s = load_database(stack.mariadb, database, rows)
    apply_resources(stack, root, database, namespace, PARALLEL_DEGREES)
    stack.worker.start()
    dump = shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                       database])
    values = {"dump": dump, "cnf": str(cnf), "db": database, "file": str(root / "dump.sql"),
              "dir": str(root / "dump.mydumper")}
    dump_bytes = count_dump_bytes(dump)
    print(f"   loaded in {load_s:.1f} s; dump is {dump_bytes / MIB:,.0f} MiB", flush=True)
    meter, worker_meter = meters(stack)
    order, timed, snapshots = [*BACKUPS, *STASHQ], [], {}
    for run, pipeline in rotations(order, runs):
        if pipeline in STASHQ:
            result, snapshots[pipeline] = stashq_backup(stack, namespace, STASHQ[pipeline],
                                                        pipeline, worker_meter)
        else:
            result = run_backup_baseline(pipeline, values, root / f"out.{pipeline}", meter)
        timed.append(result)
        print(f"   run {run + 1} {LABELS[pipeline]:<30} {result.wall_s:7.2f} s", flush=True)
    run_shell(f"{dump} > {shlex.quote(values['file'])}")  # the restores' sources, untimed
    run_shell(BACKUPS["mydumper"].format(out=shlex.quote(values["dir"]), **values))
    restores = run_restores(stack, namespace, values, snapshots, meter, worker_meter)
    peaks = {p: memory_of(stack, namespace, p) for p in STASHQ}
    drop(stack.mariadb, database)
    return Result(size_mib, rows, dump_bytes, timed, restores, peaks)


# --- reporting -----------------------------------------------------------------------


def median(runs: list[Run], pipeline: str, key: str = "wall_s") -> float:
    return statistics.median(getattr(r, key) if key != "session" else r.extra["session"]
                             for r in runs if r.pipeline == pipeline)


def report(result: Result, argv: list[str]) -> None:
    runs, restores = result.runs, result.restores
    raw = median(runs, "raw")
    print(f"\n{result.size_mib} MiB requested, dump {result.dump_bytes / MIB:,.0f} MiB")
    print(f"{'backup':<32} {'wall s':>7} {'x raw':>6} {'session s':>9} {'CPU s':>6} "
          f"{'DB s':>6} {'S3 s':>6} {'stored MiB':>10} {'peak RSS MiB':>12}")
    for p in [*BACKUPS, *STASHQ]:
        session = f"{median(runs, p, 'session'):9.2f}" if p in STASHQ else " " * 9
        print(f"{LABELS[p]:<32} {median(runs, p):7.2f} {median(runs, p) / raw:6.2f} {session} "
              + " ".join(f"{median(runs, p, k):6.1f}" for k in ("cpu_s", "db_cpu_s", "s3_cpu_s"))
              + f" {median(runs, p, 'stored_bytes') / MIB:10.1f}"
              + (f" {result.peak_rss_mib[p]:12.0f}" if p in STASHQ else ""))
    base = median(restores, "mariadb")
    print(f"\n{'restore':<32} {'wall s':>7} {'x mariadb':>9} {'CPU s':>6} {'DB s':>6}")
    for r in restores:
        print(f"{LABELS[r.pipeline]:<32} {r.wall_s:7.2f} {r.wall_s / base:9.2f} "
              f"{r.cpu_s:6.1f} {r.db_cpu_s:6.1f}")
    checks = targets(runs, restores)
    print("\ntargets (the issue's):")
    for what, value, limit, met in checks:
        print(f"  {what:<52} {value:6.2f}  limit {limit:g}  {'PASS' if met else 'MISS'}")
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": argv,
        **asdict(result),
        "targets": [dict(zip(("what", "value", "limit", "met"), c, strict=True))
                    for c in checks]}, indent=2))
    print(f"\nwrote {RESULTS_PATH}")


def targets(runs: list[Run], restores: list[Run]) -> list[tuple[str, float, float, bool]]:
    """(what, measured, limit, met): the parallel mode's targets of the issue."""
    by = {r.pipeline: r.wall_s for r in restores}
    checks = [(f"StashQ parallel {n} session / mydumper -t {PEER_THREADS} (≤)",
               median(runs, f"stashq-p{n}", "session") / median(runs, "mydumper"), 1.0)
              for n in PARALLEL_DEGREES]
    checks += [(f"StashQ restore of parallel {n} / myloader (≤)",
                by[f"restore-stashq-p{n}"] / by["myloader"], 1.0) for n in PARALLEL_DEGREES]
    checks.append(("StashQ single restore / mariadb < dump.sql (≤)",
                   by["restore-stashq"] / by["mariadb"], 1.1))
    return [(what, value, limit, value <= limit) for what, value, limit in checks]


# --- main ----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_parallel",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_MIB,
                        help="dump size, MiB (%(default)s)")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs of each backup; medians are shown (%(default)s)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="worker setting, e.g. STASHQ_PARTS_IN_FLIGHT=1 (repeatable)")
    args = parser.parse_args(argv)
    settings = env_assignments(parser, "--env", args.env)
    if not (shutil.which("mydumper") and shutil.which("myloader")):
        print("mydumper/myloader are not installed (apt-get install mydumper)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-parallel-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)  # runs last
        print(f"starting servers in {root} ...", flush=True)
        mariadb, redis, s3, pushgateway = start_servers(
            root, buffer_pool_mib(2 * args.size_mib), exits)  # source and restored copy
        env = stashq_env(redis, pushgateway, root, 1) | settings
        cnf = exits.enter_context(client_options(mariadb))
        worker = Worker(env, root / "worker.log")
        exits.callback(worker.stop)
        stack = Stack(env, worker, mariadb, s3, pushgateway, redis.url)
        report(bench(args.size_mib, args.runs, stack, cnf, root), argv)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
