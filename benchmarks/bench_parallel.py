"""`python -m benchmarks.bench_parallel`: StashQ's parallel mode against mydumper and
myloader, backup and restore, on the same data in the same run.

The issue's targets for the parallel mode are set against the tools that already dump
and load with several threads: a parallel StashQ backup to S3 no slower than
`mydumper -t 2` writing plain files to local disk, a parallel restore no slower than
`myloader -t 2`, and a single-stream restore within 1.1× of `mariadb < dump.sql`. The
servers, data, meters and worker are `bench_backup`'s; StashQ runs at its default zstd
level (1), as a user gets it. A report, not a test: it exits 0 unless something broke.
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
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.bench_backup import (
    BUFFER_POOL_SLACK_MIB,
    DUMP_BYTES_PER_ROW,
    MIB,
    TABLES,
    Meter,
    Run,
    _interrupt,
    count_dump_bytes,
    load_database,
    peak_rss_mib,
    run_shell,
    start_servers,
    stashq_env,
)
from tests.integration.conftest import Stack, Worker
from tests.integration.resources import backup_configuration, standard_setup
from tests.integration.test_backup_restore import created
from workers.engines.base import ConnectionInfo, defaults_file
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS
from workers.state.redis import RedisStore
from workflows.resources import BackupSession

#: Dump size measured by default, MiB: "a few hundred MB".
DEFAULT_SIZE_MIB = 384
#: Dump clients of the parallel StashQ backups (param ``parallel``).
PARALLEL_DEGREES = (2, 4)
#: mydumper's and myloader's threads: the issue's baseline, as many as the cores here.
PEER_THREADS = 2
#: Seconds one backup or restore may take before the benchmark gives up.
TIMEOUT_S = 1800
RESULTS_PATH = Path(__file__).with_name("results") / "parallel.json"

#: Backups; `{dump}` is the mariadb-dump command line StashQ runs.
BACKUPS = {
    "raw": "{dump} > /dev/null",
    "mydumper": (f"mydumper --defaults-file={{cnf}} -B {{db}} -t {PEER_THREADS} -G -E -R "
                 "--trx-consistency-only -v 1 -o {out}"),
}
#: Restores into `{target}`, from the dump file and the mydumper directory made untimed.
RESTORES = {
    "mariadb": "mariadb --defaults-file={cnf} {target} < {file}",
    "myloader": (f"myloader --defaults-file={{cnf}} -d {{dir}} -B {{target}} "
                 f"-t {PEER_THREADS} -o -v 1"),
}
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


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else \
        (path.stat().st_size if path.exists() else 0)


def run_backup_baseline(pipeline: str, values: dict[str, str], out: Path, meter: Meter) -> Run:
    command = BACKUPS[pipeline].format(out=shlex.quote(str(out)), **values)
    before = meter.read()
    run_shell(command)
    run = meter.run(pipeline, before)
    run.stored_bytes = directory_bytes(out)
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    return run


def run_stashq_backup(stack: Stack, namespace: str, pipeline: str,
                      meter: Meter) -> tuple[Run, str]:
    """One backup through the real worker; its session and step seconds go to `extra`."""
    before = meter.read()
    result = stack.cli("backup", STASHQ[pipeline], "--wait", namespace=namespace,
                       timeout=TIMEOUT_S)
    run = meter.run(pipeline, before)
    if result.returncode != 0:
        raise RuntimeError(f"stashq backup failed:\n{result.stdout}{result.stderr}\n"
                           f"worker log:\n{stack.worker.log()[-3000:]}")
    name = created(result.stdout)
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    run.stored_bytes = int(status["snapshot"]["totalSize"])
    run.extra = {"session": float(status["sessionDurationSeconds"]),
                 "step": float(status["snapshot"]["processingTimeSeconds"])}
    return run, name


def memory_of(stack: Stack, namespace: str, pipeline: str) -> float:
    """Peak RSS (MiB) of one backup, alone in a fresh worker: VmHWM only grows, so the
    timed runs, which share a worker, cannot tell one pipeline's peak from another's."""
    stack.worker.stop()
    stack.worker.start()
    assert stack.worker.proc is not None
    meter = Meter(stack.mariadb.running_pid() or -1, stack.s3.running_pid() or -1,
                  stack.worker.proc.pid)
    run_stashq_backup(stack, namespace, pipeline, meter)
    peak = max(peak_rss_mib(stack.worker.proc.pid).values())
    stack.worker.stop()
    print(f"   peak RSS of {LABELS[pipeline]:<26} {peak:7.0f} MiB", flush=True)
    return peak


def recreate(stack: Stack, database: str) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}`")


def run_restores(stack: Stack, namespace: str, values: dict[str, str],
                 snapshots: dict[str, str], meter: Meter, worker_meter: Meter) -> list[Run]:
    """Each restore once, into a fresh database; StashQ restores the pipeline's last
    snapshot, a parallel one with as many loads as it has data streams (the default)."""
    target, runs = f"{values['db']}_restored", []
    for pipeline in [*RESTORES, *(f"restore-{p}" for p in STASHQ)]:
        recreate(stack, target)
        if pipeline in RESTORES:
            before = meter.read()
            run_shell(RESTORES[pipeline].format(target=target, **values))
            runs.append(meter.run(pipeline, before))
        else:
            before = worker_meter.read()
            stack.cli("restore", "--repository", "repo", "--target", "db", "--snapshot",
                      snapshots[pipeline.removeprefix("restore-")], "--database", target,
                      "--wait", namespace=namespace, check=True, timeout=TIMEOUT_S)
            runs.append(worker_meter.run(pipeline, before))
        print(f"   {LABELS[pipeline]:<30} {runs[-1].wall_s:7.2f} s", flush=True)
    with stack.mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{target}`")
    return runs


def apply_resources(stack: Stack, root: Path, database: str, namespace: str) -> None:
    """The standard resources, plus a BackupConfiguration per parallel degree."""
    bucket = f"bench-parallel-{uuid.uuid4().hex[:12]}"
    stack.s3.make_bucket(bucket)
    setup = standard_setup(root / f"{namespace}.yaml", stack.s3, stack.mariadb, bucket, database)
    extra = [backup_configuration(f"parallel{n}", "repo", "db", database).rstrip("\n")
             + f'\n      - {{name: parallel, value: "{n}"}}\n' for n in PARALLEL_DEGREES]
    setup.write_text("---\n".join([setup.read_text(), *extra]))
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)


def bench(size_mib: int, runs: int, stack: Stack, cnf: Path, root: Path) -> Result:
    database, namespace = f"bench_{size_mib}mib", f"bench-parallel-{size_mib}mib"
    rows = size_mib * MIB // (TABLES * DUMP_BYTES_PER_ROW)
    print(f"\n== {size_mib} MiB: loading {TABLES} x {rows:,} rows ...", flush=True)
    load_s = load_database(stack.mariadb, database, rows)
    apply_resources(stack, root, database, namespace)
    stack.worker.start()
    assert stack.worker.proc is not None
    dump = shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                       database])
    values = {"dump": dump, "cnf": str(cnf), "db": database, "file": str(root / "dump.sql"),
              "dir": str(root / "dump.mydumper")}
    dump_bytes = count_dump_bytes(dump)
    print(f"   loaded in {load_s:.1f} s; dump is {dump_bytes / MIB:,.0f} MiB", flush=True)
    meter = Meter(stack.mariadb.running_pid() or -1, stack.s3.running_pid() or -1)
    worker_meter = Meter(meter.db_pid, meter.s3_pid, stack.worker.proc.pid)
    order, timed, snapshots = [*BACKUPS, *STASHQ], [], {}
    for run in range(runs):
        for pipeline in order[run % len(order):] + order[:run % len(order)]:  # interleaved
            if pipeline in STASHQ:
                result, snapshots[pipeline] = run_stashq_backup(stack, namespace, pipeline,
                                                                worker_meter)
            else:
                result = run_backup_baseline(pipeline, values, root / f"out.{pipeline}", meter)
            timed.append(result)
            print(f"   run {run + 1} {LABELS[pipeline]:<30} {result.wall_s:7.2f} s", flush=True)
    run_shell(f"{dump} > {shlex.quote(values['file'])}")  # the restores' sources, untimed
    run_shell(BACKUPS["mydumper"].format(out=shlex.quote(values["dir"]), **values))
    restores = run_restores(stack, namespace, values, snapshots, meter, worker_meter)
    peaks = {p: memory_of(stack, namespace, p) for p in STASHQ}
    with stack.mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{database}`")
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
    if not (shutil.which("mydumper") and shutil.which("myloader")):
        print("mydumper/myloader are not installed (apt-get install mydumper)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-parallel-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)  # runs last
        print(f"starting servers in {root} ...", flush=True)
        mariadb, redis, s3, pushgateway = start_servers(
            root, 2 * args.size_mib + BUFFER_POOL_SLACK_MIB, exits)  # source and restored copy
        env = stashq_env(redis, pushgateway, root) | {"STASHQ_ZSTD_LEVEL": "1"} | dict(
            item.split("=", 1) for item in args.env)
        cnf = exits.enter_context(defaults_file(ConnectionInfo(
            mariadb.host, mariadb.port, mariadb.user, mariadb.password)))
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
