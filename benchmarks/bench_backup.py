"""`make bench`: the benchmark suite of issue 8 — StashQ backups and restores against the
tools they replace or compete with, on the same data, the same S3 server, in one run.

Why ratios: seconds depend on the machine, so every number is set against baselines
measured in the same run, interleaved with StashQ (the order rotates each run):

- backups: the raw `mariadb-dump` (the floor), `| gzip -6` and `| zstd -1 -T0` to a
  file, `| restic backup --stdin` into a restic repository on the same S3 server (Stash's
  own pipeline), `mydumper -t 2` to local disk, and StashQ through the real worker, one
  stream and `parallel: "2"`;
- restores, each into an empty database and then checked against the source (rows and
  CHECKSUM TABLE, so a restore that loads nothing fails instead of looking fast):
  `mariadb < dump.sql`, `restic dump | mariadb`, `myloader -t 2`, and StashQ's restore of
  its one-stream and its parallel snapshot.

It prints one table per size and PASS/MISS against the issue's targets, and exits 0
unless something broke: it is a report, not a test.

The hard thing is seeing the worker's cost. StashQ runs in a Celery prefork child that
outlives the task, so `RUSAGE_CHILDREN` never sees it: its CPU is read from
/proc/<pid>/stat (its own, plus the clients it reaped) over the worker's process group,
and its peak memory from each process's VmHWM, in a fresh worker that does only the one
backup or restore measured (VmHWM only grows).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from operator import attrgetter
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
    bucket_bytes,
    buffer_pool_mib,
    client_options,
    count_dump_bytes,
    directory_bytes,
    drop,
    empty_bucket,
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
from devstack.servers import S3Server
from devstack.stack import Stack, Worker
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS

#: Dump sizes measured by default, MiB: a small and a large one, to see memory stay flat.
#: 4096 is the issue's optional third size: `--sizes 256,1024,4096`.
DEFAULT_SIZES_MIB = (256, 1024)
#: Runs of each backup per size: a median of 3 rides out a neighbour's burst of CPU.
DEFAULT_RUNS = 3
#: Runs of each restore per size (a 1 GiB restore takes about a minute here).
DEFAULT_RESTORE_RUNS = 1
#: zstd level of the `| zstd -T0` baseline and of StashQ (set to the same): StashQ's
#: default, 1, unless BENCH_ZSTD_LEVEL says otherwise (3 compares with `zstd -3`).
ZSTD_LEVEL = int(os.environ.get("BENCH_ZSTD_LEVEL", "1"))
GZIP_LEVEL = 6
#: Data streams of the parallel StashQ backup (param `parallel`).
PARALLEL = 2
RESULTS_PATH = Path(__file__).with_name("results") / "latest.json"

#: The issue's targets. StashQ is judged on its session time (backups and restores), the
#: baselines on wall time; the tables show StashQ's wall time too.
MAX_SINGLE_TO_RAW = 1.3        # one-stream backup to S3 / mariadb-dump > /dev/null
MAX_SINGLE_TO_ZSTD = 1.0       # ... / mariadb-dump | zstd -T0 > file ("i.e." of the issue)
MIN_RESTIC_TO_SINGLE = 2.0     # mariadb-dump | restic backup --stdin / one-stream backup
MAX_PARALLEL_TO_MYDUMPER = 1.0  # parallel backup to S3 / mydumper -t 2 to local disk
MAX_PARALLEL_RESTORE_TO_MYLOADER = 1.0  # restore of the parallel snapshot / myloader -t 2
MAX_SINGLE_RESTORE_TO_MARIADB = 1.1     # restore of the one-stream snapshot / mariadb <
MAX_PEAK_RSS_MIB = 100.0       # worker peak RSS, every StashQ backup and restore
MAX_RSS_SPREAD = 1.10          # ... largest / smallest over the sizes ("flat within 10 %")

#: The name restic stores the dump under (`--stdin-filename`), and dumps it back by.
RESTIC_FILENAME = "dump.sql"
#: Shell backups. `{dump}` is the same mariadb-dump command line StashQ runs, `{out}` a
#: file or directory, measured and removed after each run. restic's repository, password
#: and S3 keys come from the environment (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE,
#: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never argv.
BACKUPS = {
    "raw": "{dump} > /dev/null",
    "gzip": f"{{dump}} | gzip -{GZIP_LEVEL} > {{out}}",
    "zstd": f"{{dump}} | zstd -q -{ZSTD_LEVEL} -T0 > {{out}}",
    "restic": f"{{dump}} | restic backup --quiet --stdin --stdin-filename {RESTIC_FILENAME}",
    "mydumper": MYDUMPER,
}
#: StashQ backups → the BackupConfiguration each runs.
STASHQ_BACKUPS = {"stashq": "nightly", f"stashq-p{PARALLEL}": f"parallel{PARALLEL}"}
#: Shell restores into `{target}`, from the dump file and mydumper directory made untimed
#: and from the last restic backup.
RESTORES = {
    "mariadb": MARIADB_LOAD,
    "restic-dump": f"restic dump latest {RESTIC_FILENAME} | mariadb --defaults-file={{cnf}} "
                   "{target}",
    "myloader": MYLOADER,
}
#: StashQ restores → the backup pipeline whose last snapshot each restores.
STASHQ_RESTORES = {f"restore-{p}": p for p in STASHQ_BACKUPS}
#: restic's repository: format 2, which compresses (zstd, `--compression auto`, the default).
RESTIC_INIT = "restic init --repository-version 2"
LABELS = {
    "raw": "mariadb-dump > /dev/null", "gzip": f"| gzip -{GZIP_LEVEL} > file",
    "zstd": f"| zstd -{ZSTD_LEVEL} -T0 > file", "restic": "| restic backup --stdin",
    "mydumper": f"mydumper -t {PEER_THREADS} (files)", "stashq": "stashq backup (1 stream)",
    f"stashq-p{PARALLEL}": f"stashq backup parallel {PARALLEL}",
    "mariadb": "mariadb < dump.sql", "restic-dump": "restic dump | mariadb",
    "myloader": f"myloader -t {PEER_THREADS}", "restore-stashq": "stashq restore (1 stream)",
    f"restore-stashq-p{PARALLEL}": f"stashq restore of parallel {PARALLEL}",
}
TOOLS = {"mariadb-dump": "mariadb-client", "mariadb": "mariadb-client", "gzip": "gzip",
         "zstd": "zstd", "restic": "restic", "mydumper": "mydumper", "myloader": "mydumper"}


@dataclass
class SizeResult:
    size_mib: int
    rows: int
    dump_bytes: int
    load_s: float
    runs: list[Run]  #: backups
    restores: list[Run]
    idle_rss_mib: dict[str, float] = field(default_factory=dict)  #: per StashQ pipeline
    peak_rss_mib: dict[str, float] = field(default_factory=dict)  #: its fresh worker's VmHWM

    def median(self, pipeline: str, value: Callable[[Run], float] = lambda r: r.wall_s) -> float:
        return statistics.median(value(r) for r in self.runs + self.restores
                                 if r.pipeline == pipeline)

    def session(self, pipeline: str) -> float:
        """Median session seconds of a StashQ pipeline (precheck to final status)."""
        return self.median(pipeline, lambda r: r.extra["session"])


# --- restic ----------------------------------------------------------------------------


@dataclass
class Restic:
    """restic repositories on the benchmark's S3 server, in a bucket of their own.

    Each timed backup goes to a new repository (initialized untimed, the previous one
    deleted): into the same one, restic would deduplicate the identical data of the
    second and third run and upload nothing, a time no first or changed backup gets.
    """

    s3: S3Server
    bucket: str
    password_file: Path
    cache_dir: Path
    prefix: str = ""

    @classmethod
    def create(cls, s3: S3Server, root: Path) -> Restic:
        bucket = f"restic-{uuid.uuid4().hex[:12]}"
        s3.make_bucket(bucket)
        password = root / "restic.password"
        if not password.exists():
            fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(uuid.uuid4().hex + "\n")
        return cls(s3, bucket, password, root / "restic-cache")

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {
            "RESTIC_REPOSITORY": f"s3:{self.s3.endpoint}/{self.bucket}/{self.prefix}",
            "RESTIC_PASSWORD_FILE": str(self.password_file),
            "RESTIC_CACHE_DIR": str(self.cache_dir),
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key}

    def fresh(self) -> None:
        """Delete the last repository and initialize a new one (untimed)."""
        if self.prefix:
            empty_bucket(self.s3, self.bucket, self.prefix + "/")
        self.prefix = f"repo-{uuid.uuid4().hex[:8]}"
        run_shell(RESTIC_INIT, capture=True, env=self.env)

    def stored_bytes(self) -> int:
        return bucket_bytes(self.s3, self.bucket, self.prefix + "/")


# --- measuring -----------------------------------------------------------------------


@dataclass
class Bench:
    """One size's database, resources and worker, and how to run each pipeline on it."""

    stack: Stack
    namespace: str
    values: dict[str, str]  #: `{dump}`, `{cnf}`, `{db}`, `{file}`, `{dir}` of the commands
    root: Path
    restic: Restic
    snapshots: dict[str, str] = field(default_factory=dict)  #: last one per StashQ backup

    def backup(self, pipeline: str, meter: Meter, worker_meter: Meter) -> Run:
        if pipeline in STASHQ_BACKUPS:
            run, self.snapshots[pipeline] = stashq_backup(
                self.stack, self.namespace, STASHQ_BACKUPS[pipeline], pipeline, worker_meter)
            return run
        out = self.root / f"out.{pipeline}"
        command = BACKUPS[pipeline].format(out=shlex.quote(str(out)), **self.values)
        if pipeline == "restic":
            self.restic.fresh()
            run = meter.time(pipeline, partial(run_shell, command, env=self.restic.env))
            run.stored_bytes = self.restic.stored_bytes()
            return run
        run = meter.time(pipeline, partial(run_shell, command))
        run.stored_bytes = directory_bytes(out)
        remove(out)
        return run

    def restore(self, pipeline: str, meter: Meter, worker_meter: Meter,
                source: Mapping[str, tuple[int, int]]) -> Run:
        """Restore into an empty `{db}_restored`, then check it against `source`."""
        target = f"{self.values['db']}_restored"
        recreate(self.stack.mariadb, target)
        if pipeline in STASHQ_RESTORES:
            run = stashq_restore(self.stack, self.namespace,
                                 self.snapshots[STASHQ_RESTORES[pipeline]], target, pipeline,
                                 worker_meter)
        else:
            command = RESTORES[pipeline].format(target=target, **self.values)
            env = self.restic.env if pipeline == "restic-dump" else None
            run = meter.time(pipeline, partial(run_shell, command, env=env))
        verify_restored(self.stack.mariadb, target, source, LABELS[pipeline])
        drop(self.stack.mariadb, target)
        return run


def bench_size(size_mib: int, args: argparse.Namespace, stack: Stack, cnf: Path, root: Path,
               exits: contextlib.ExitStack) -> SizeResult:
    """Load a database of about `size_mib` of dump, time every backup `args.runs` times
    and every restore `args.restore_runs` times, then each StashQ pipeline's memory."""
    database, namespace = f"bench_{size_mib}mib", f"bench-{size_mib}mib"
    rows = rows_for(size_mib)
    print(f"\n== {size_mib} MiB: loading {TABLES} x {rows:,} rows ...", flush=True)
    load_s = load_database(stack.mariadb, database, rows)
    bucket = apply_resources(stack, root, database, namespace, (PARALLEL,))
    restic = Restic.create(stack.s3, root)
    exits.callback(stack.worker.stop)
    stack.worker.start()
    dump = shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                       database])
    values = {"dump": dump, "cnf": str(cnf), "db": database, "file": str(root / "dump.sql"),
              "dir": str(root / "dump.mydumper")}
    bench = Bench(stack, namespace, values, root, restic)
    dump_bytes = count_dump_bytes(dump)
    source = table_checksums(stack.mariadb, database)
    print(f"   loaded in {load_s:.1f} s; dump is {dump_bytes / MIB:,.0f} MiB", flush=True)
    meter, worker_meter = meters(stack)
    result = SizeResult(size_mib, rows, dump_bytes, load_s, [], [])
    for run, pipeline in rotations([*BACKUPS, *STASHQ_BACKUPS], args.runs):
        result.runs.append(bench.backup(pipeline, meter, worker_meter))
        print(f"   run {run + 1} {LABELS[pipeline]:<32} {result.runs[-1].wall_s:7.2f} s",
              flush=True)
    run_shell(f"{dump} > {shlex.quote(values['file'])}")  # the restores' sources, untimed
    run_shell(MYDUMPER.format(out=shlex.quote(values["dir"]), **values))
    for run, pipeline in rotations([*RESTORES, *STASHQ_RESTORES], args.restore_runs):
        result.restores.append(bench.restore(pipeline, meter, worker_meter, source))
        print(f"   restore {run + 1} {LABELS[pipeline]:<28} {result.restores[-1].wall_s:7.2f} s"
              " (verified)", flush=True)
    for pipeline in [*STASHQ_BACKUPS, *STASHQ_RESTORES]:  # each alone in a fresh worker
        action = (partial(bench.backup, pipeline, meter) if pipeline in STASHQ_BACKUPS
                  else partial(bench.restore, pipeline, meter, source=source))
        idle, peak = fresh_worker_peak(stack, action)
        result.idle_rss_mib[pipeline], result.peak_rss_mib[pipeline] = idle, peak
        print(f"   peak RSS of {LABELS[pipeline]:<28} {peak:7.0f} MiB (idle {idle:.0f})",
              flush=True)
    drop(stack.mariadb, database)
    remove(Path(values["file"]))
    remove(Path(values["dir"]))
    empty_bucket(stack.s3, bucket)
    empty_bucket(stack.s3, restic.bucket)
    return result


# --- reporting -----------------------------------------------------------------------


Check = tuple[str, float, float, bool]


def _le(what: str, value: float, limit: float) -> Check:
    return (f"{what} (≤)", value, limit, value <= limit)


def targets(results: list[SizeResult]) -> list[Check]:
    """(what, measured, limit, met) for each of the issue's targets."""
    p = f"stashq-p{PARALLEL}"
    checks = []
    for r in results:
        single, size = r.session("stashq"), f"{r.size_mib} MiB:"
        restic_to = r.median("restic") / single
        checks += [
            _le(f"{size} StashQ 1-stream session / raw dump", single / r.median("raw"),
                MAX_SINGLE_TO_RAW),
            _le(f"{size} StashQ 1-stream session / {LABELS['zstd']}",
                single / r.median("zstd"), MAX_SINGLE_TO_ZSTD),
            (f"{size} restic pipeline / StashQ 1-stream session (≥)", restic_to,
             MIN_RESTIC_TO_SINGLE, restic_to >= MIN_RESTIC_TO_SINGLE),
            _le(f"{size} StashQ parallel {PARALLEL} session / mydumper -t {PEER_THREADS}",
                r.session(p) / r.median("mydumper"), MAX_PARALLEL_TO_MYDUMPER),
            _le(f"{size} StashQ restore session of parallel {PARALLEL} / "
                f"myloader -t {PEER_THREADS}",
                r.session(f"restore-{p}") / r.median("myloader"),
                MAX_PARALLEL_RESTORE_TO_MYLOADER),
            _le(f"{size} StashQ 1-stream restore session / mariadb < dump.sql",
                r.session("restore-stashq") / r.median("mariadb"),
                MAX_SINGLE_RESTORE_TO_MARIADB)]
        checks += [_le(f"{size} worker peak RSS MiB, {LABELS[pipeline]}", peak,
                       MAX_PEAK_RSS_MIB) for pipeline, peak in r.peak_rss_mib.items()]
    if len(results) > 1:
        for pipeline in results[0].peak_rss_mib:
            peaks = [r.peak_rss_mib[pipeline] for r in results]
            checks.append(_le(f"peak RSS largest / smallest size, {LABELS[pipeline]}",
                              max(peaks) / min(peaks), MAX_RSS_SPREAD))
    return checks


def _cpu(r: SizeResult, pipeline: str) -> str:
    return " ".join(f"{r.median(pipeline, attrgetter(key)):6.1f}"
                    for key in ("cpu_s", "db_cpu_s", "s3_cpu_s"))


def _rss(r: SizeResult, pipeline: str) -> str:
    if pipeline not in r.peak_rss_mib:
        return ""
    return f"{r.peak_rss_mib[pipeline]:6.0f} (idle {r.idle_rss_mib[pipeline]:.0f})"


def size_table(r: SizeResult) -> list[str]:
    """The lines of one size's table: backups, then restores."""
    runs = len(r.runs) // (len(BACKUPS) + len(STASHQ_BACKUPS))
    restore_runs = len(r.restores) // (len(RESTORES) + len(STASHQ_RESTORES))
    lines = [f"{r.size_mib} MiB requested: dump {r.dump_bytes / MIB:,.0f} MiB "
             f"({TABLES} x {r.rows:,} rows), loaded in {r.load_s:.1f} s; medians of {runs} "
             f"backup and {restore_runs} restore run(s)",
             f"{'backup':<30} {'wall s':>7} {'x raw':>9} {'session s':>9} {'CPU s':>6} "
             f"{'DB s':>6} {'S3 s':>6} {'stored MiB':>10} {'smaller':>7} {'peak RSS MiB':>12}"]
    raw = r.median("raw")
    for p in [*BACKUPS, *STASHQ_BACKUPS]:
        wall, stored = r.median(p), r.median(p, lambda run: run.stored_bytes)
        session = f"{r.session(p):9.2f}" if p in STASHQ_BACKUPS else ""
        size = f"{stored / MIB:10.1f} {r.dump_bytes / stored:6.2f}x" if stored else ""
        lines.append(f"{LABELS[p]:<30} {wall:7.2f} {wall / raw:9.2f} {session:>9} "
                     f"{_cpu(r, p)} {size:18} {_rss(r, p)}".rstrip())
    lines.append(f"{'restore':<30} {'wall s':>7} {'x mariadb':>9} {'session s':>9} "
                 f"{'CPU s':>6} {'DB s':>6} {'S3 s':>6} {'':>18} {'peak RSS MiB':>12}")
    base = r.median("mariadb")
    for p in [*RESTORES, *STASHQ_RESTORES]:
        wall = r.median(p)
        session = f"{r.session(p):9.2f}" if p in STASHQ_RESTORES else ""
        lines.append(f"{LABELS[p]:<30} {wall:7.2f} {wall / base:9.2f} {session:>9} "
                     f"{_cpu(r, p)} {'':18} {_rss(r, p)}".rstrip())
    return lines


def tool_versions() -> dict[str, str]:
    versions = {}
    for tool, flag in (("mariadb-dump", "--version"), ("restic", "version"),
                       ("mydumper", "--version"), ("zstd", "--version"), ("gzip", "--version")):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=30)
            versions[tool] = (out.stdout or out.stderr).strip().splitlines()[0]
    return versions


def report(results: list[SizeResult], argv: list[str]) -> None:
    for r in results:
        print("\n" + "\n".join(size_table(r)))
    checks = targets(results)
    print("\ntargets (issue 8; StashQ on its session time, baselines on wall time):")
    for what, value, limit, met in checks:
        print(f"  {what:<62} {value:7.2f}  limit {limit:g}  {'PASS' if met else 'MISS'}")
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": argv,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release(), "tools": tool_versions()},
        "zstd_level": ZSTD_LEVEL,
        "commands": {"backups": BACKUPS, "restores": RESTORES, "restic_init": RESTIC_INIT,
                     "stashq_backups": STASHQ_BACKUPS},
        "sizes": [asdict(r) for r in results],
        "tables": {r.size_mib: size_table(r) for r in results},
        "targets": [dict(zip(("what", "value", "limit", "met"), c, strict=True))
                    for c in checks]}, indent=2))
    print(f"\nwrote {RESULTS_PATH}")


# --- main ----------------------------------------------------------------------------


def disk_needed_mib(sizes: list[int], runs: int) -> int:
    """A generous estimate of the disk one benchmark fills, MiB: the largest size's source
    and restored tables, plain dump and mydumper copy (~5x its dump), plus every size's
    S3 objects (StashQ snapshots and restic, ~0.4x a dump each; SeaweedFS may keep
    deleted ones until it vacuums), plus 2 GiB of redo log and servers."""
    return max(sizes) * 5 + int(sum(sizes) * 0.4 * (2 * runs + 5)) + 2048


def preflight(args: argparse.Namespace, root: Path) -> str | None:
    """Why the benchmark cannot run here, or None."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        return f"missing programs; apt-get install {' '.join(missing)} (scripts/install.sh)"
    need, free = disk_needed_mib(args.sizes, args.runs), shutil.disk_usage(root).free // MIB
    if free < need:
        return f"{root}: {free:,} MiB free, about {need:,} MiB needed for sizes {args.sizes}"
    return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backup",
                                     description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--size-mib", type=int, help="one dump size, MiB")
    which.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES_MIB)),
                       help="comma-separated dump sizes, MiB (default: %(default)s; the "
                            "issue's optional third size: 256,1024,4096)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help="runs of each backup; medians are shown (%(default)s)")
    parser.add_argument("--restore-runs", type=int, default=DEFAULT_RESTORE_RUNS,
                        help="runs of each restore; medians are shown (%(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="STASHQ_NAME=VALUE",
                        help="a StashQ setting for the worker and CLI, e.g. "
                             "STASHQ_ZSTD_THREADS=0 (repeatable; default: the product's)")
    args = parser.parse_args(argv)
    args.settings = env_assignments(parser, "--set", args.set, prefix="STASHQ_")
    if args.runs < 1 or args.restore_runs < 1:
        parser.error("--runs and --restore-runs must be at least 1")
    args.sizes = [args.size_mib] if args.size_mib else [int(s) for s in args.sizes.split(",")]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)  # runs last
        problem = preflight(args, root)
        if problem:
            print(f"bench: {problem}", file=sys.stderr)
            return 1
        pool = buffer_pool_mib(2 * max(args.sizes))  # the source and a restored copy
        print(f"starting servers in {root} (buffer pool {pool:,} MiB) ...", flush=True)
        mariadb, redis, s3, pushgateway = start_servers(root, pool, exits)
        env = stashq_env(redis, pushgateway, root, ZSTD_LEVEL) | args.settings
        if args.settings:
            print("StashQ settings: " + " ".join(f"{k}={v}" for k, v in args.settings.items()),
                  flush=True)
        cnf = exits.enter_context(client_options(mariadb))
        results = []
        for size in args.sizes:
            worker = Worker(env, root / f"worker-{size}.log")
            stack = Stack(env, worker, mariadb, s3, pushgateway, redis.url)
            results.append(bench_size(size, args, stack, cnf, root, exits))
        report(results, argv)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
