"""`make bench`: a StashQ backup against the shell pipelines it replaces, on the same data.

Why ratios: seconds depend on the machine, so every number is set against baselines
measured in the same run, interleaved with StashQ — the raw `mariadb-dump` (the floor),
`| gzip -6` (what users run today) and `| zstd -3 -T0` (the best one shell pipeline
does). It prints PASS/MISS against the issue's targets and exits 0 unless something
broke: it is a report, not a test.

The hard thing is seeing the worker's cost. StashQ runs in a Celery prefork child that
outlives the backup, so `RUSAGE_CHILDREN` never sees it: its CPU is read from
/proc/<pid>/stat (its own, plus the dump client it reaped) over the worker's process
group, and its peak memory from each process's VmHWM. A fresh worker per size makes
that VmHWM the peak for that size.

Servers, worker and CLI are the test suite's own (`tests/servers`, `tests/integration`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from pathlib import Path
from types import FrameType

from tests.integration.conftest import Stack, Worker
from tests.integration.resources import standard_setup
from tests.integration.test_backup_restore import created
from tests.servers import MariaDBServer, Pushgateway, RedisServer, S3Ports, S3Server, free_port
from workers.engines.base import ConnectionInfo, defaults_file
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS
from workers.state.redis import RedisStore
from workflows.resources import BackupSession

MIB = 2**20
#: Dump sizes measured by default, MiB: a small and a large one, to see memory stay flat.
DEFAULT_SIZES_MIB = (256, 1024)
#: Runs of each pipeline per size: a median of 3 rides out a neighbour's burst of CPU.
DEFAULT_RUNS = 3
#: InnoDB tables the synthetic database is spread over.
TABLES = 8
#: Dump bytes per synthetic row (measured: 110,049,915 bytes for 500,000 rows).
DUMP_BYTES_PER_ROW = 220
#: Connections filling tables at once: the generation is server CPU, 2 cores here.
LOAD_CONNECTIONS = 2
#: Buffer pool beyond the largest dump, MiB: the data stays in memory, as in the notes.
BUFFER_POOL_SLACK_MIB = 512
#: zstd level of the `| zstd -T0` baseline and of StashQ (set to the same): StashQ's
#: default, 1, unless BENCH_ZSTD_LEVEL says otherwise (3 compares with `zstd -3`).
ZSTD_LEVEL = int(os.environ.get("BENCH_ZSTD_LEVEL", "1"))
GZIP_LEVEL = 6
#: Seconds one backup may take before the benchmark gives up.
BACKUP_TIMEOUT_S = 1800
#: The issue's targets: session ≤ 1.5× the raw dump, ≥ 3× faster than gzip, peak worker
#: RSS under 150 MiB and about the same at every size (largest ≤ 1.2× smallest).
MAX_STASHQ_TO_RAW = 1.5
MIN_GZIP_TO_STASHQ = 3.0
MAX_PEAK_RSS_MIB = 150.0
MAX_RSS_SPREAD = 1.2
RESULTS_PATH = Path(__file__).with_name("results") / "latest.json"

TABLE_SQL = """CREATE TABLE `{table}` (id INT UNSIGNED PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL, created_at DATETIME NOT NULL, amount DECIMAL(10,2) NOT NULL,
  status VARCHAR(16) NOT NULL, email VARCHAR(64) NOT NULL, token CHAR(32) NOT NULL,
  note VARCHAR(255) NOT NULL) ENGINE=InnoDB"""
#: Random numbers and hex among repeated words: zstd -3 makes it ~3x smaller, gzip ~2.8x.
FILL_SQL = """INSERT INTO `{table}` SELECT seq, FLOOR(RAND() * 100000),
  '2020-01-01' + INTERVAL FLOOR(RAND() * 1e8) SECOND, ROUND(RAND() * 1000, 2),
  ELT(1 + seq % 5, 'new', 'paid', 'shipped', 'delivered', 'refunded'),
  CONCAT('customer', seq % 50000, '@example.com'), MD5(RAND()),
  CONCAT('order ', seq, ' for customer ', seq % 50000, ': ', HEX(RANDOM_BYTES(20)),
         ' thank you for your purchase')
  FROM seq_1_to_{rows}"""
#: Shell baselines; `{dump}` is the same mariadb-dump command line StashQ runs.
BASELINES = {
    "raw": "{dump} > /dev/null",
    "gzip": f"{{dump}} | gzip -{GZIP_LEVEL} > {{out}}",
    "zstd": f"{{dump}} | zstd -q -{ZSTD_LEVEL} -T0 > {{out}}",
}
LABELS = {"raw": "mariadb-dump > /dev/null", "gzip": f"| gzip -{GZIP_LEVEL}",
          "zstd": f"| zstd -{ZSTD_LEVEL} -T0", "stashq": "stashq backup --wait",
          "session": "  its session", "step": "  its dump_upload step"}


class BenchMariaDB(MariaDBServer):
    """The test server with the data in memory and loading fast (no durability needed)."""

    def __init__(self, data_dir: Path, port: int, buffer_pool_mib: int) -> None:
        super().__init__(data_dir, port)
        self.buffer_pool_mib = buffer_pool_mib

    def _command(self) -> list[str]:
        return [*super()._command(), f"--innodb-buffer-pool-size={self.buffer_pool_mib}M",
                "--innodb-log-file-size=1G", "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0"]


@dataclass
class Run:
    """One timed pipeline: seconds of wall and CPU, and what it stored."""

    pipeline: str
    wall_s: float
    cpu_s: float  #: dump client + compressor, or StashQ worker group + CLI
    db_cpu_s: float  #: mariadbd
    s3_cpu_s: float  #: the S3 server (weed): it competes for the same cores
    stored_bytes: int = 0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class SizeResult:
    size_mib: int
    rows: int
    dump_bytes: int
    load_s: float
    runs: list[Run]
    idle_rss_mib: float  #: the worker group's largest VmHWM right after it started
    peak_rss_mib: dict[int, float]  #: VmHWM of every process of the worker's group, by pid

    def median(self, pipeline: str, value: Callable[[Run], float] = lambda r: r.wall_s) -> float:
        return statistics.median(value(r) for r in self.runs if r.pipeline == pipeline)

    @property
    def peak_mib(self) -> float:
        return max(self.peak_rss_mib.values())

    @property
    def session_s(self) -> float:
        return self.median("stashq", _extra("session"))


def _extra(key: str) -> Callable[[Run], float]:
    return lambda run: run.extra[key]


# --- /proc ---------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [1] ppid, [2] pgrp, [11:15] CPU ticks."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def proc_cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of `pid`, plus those of its waited-for children if `reaped`."""
    ticks = _stat(pid)[11:15 if reaped else 13]
    return sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            if entry.name.isdigit() and int(_stat(int(entry.name))[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def peak_rss_mib(pgid: int) -> dict[int, float]:
    """VmHWM (peak resident set) of every process in group `pgid`, MiB."""
    peaks = {}
    for pid in group_pids(pgid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1]) / 1024
    return peaks


@dataclass(frozen=True)
class Meter:
    """Reads the clocks a pipeline is judged by; `worker_pgid` adds a StashQ worker's CPU."""

    db_pid: int
    s3_pid: int
    worker_pgid: int | None = None

    def read(self) -> tuple[float, float, float, float]:
        """Now: wall, client CPU (our reaped children + the worker), mariadbd, S3 server; s."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker = 0.0
        for pid in group_pids(self.worker_pgid) if self.worker_pgid else []:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                worker += proc_cpu_s(pid, reaped=True)
        return (time.perf_counter(), usage.ru_utime + usage.ru_stime + worker,
                proc_cpu_s(self.db_pid), proc_cpu_s(self.s3_pid))

    def run(self, pipeline: str, before: tuple[float, ...]) -> Run:
        """The Run from `before` (an earlier `read()`) until now."""
        wall, cpu, db, s3 = (now - then for now, then in zip(self.read(), before, strict=True))
        return Run(pipeline, wall, cpu, db, s3)


# --- setting up ----------------------------------------------------------------------


def start_servers(root: Path, buffer_pool_mib: int, exits: contextlib.ExitStack
                  ) -> tuple[BenchMariaDB, RedisServer, S3Server, Pushgateway]:
    servers = (BenchMariaDB(root / "mariadb", free_port(), buffer_pool_mib),
               RedisServer(root / "redis", free_port()), S3Server(root / "s3", S3Ports.free()),
               Pushgateway(root / "pushgateway", free_port()))
    for server in servers:
        exits.callback(server.stop)  # before start: a half-started server is stopped too
        server.start()
    return servers


def stashq_env(redis: RedisServer, pushgateway: Pushgateway, root: Path) -> dict[str, str]:
    """The worker's and CLI's environment: product defaults but for where things are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    return env | {"STASHQ_BROKER_URL": redis.url, "STASHQ_REDIS_URL": redis.url,
                  "STASHQ_PUSHGATEWAY_URL": pushgateway.url, "STASHQ_DB_WAIT_S": "2",
                  "STASHQ_ZSTD_LEVEL": str(ZSTD_LEVEL), "TMPDIR": str(root)}


def load_database(mariadb: MariaDBServer, database: str, rows: int) -> float:
    """Create `database` with TABLES tables of `rows` rows, generated by the server; seconds."""
    started = time.perf_counter()
    with mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}`")

    def fill(table: str) -> None:
        with mariadb.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(TABLE_SQL.format(table=table))
            cursor.execute(FILL_SQL.format(table=table, rows=rows))

    with ThreadPoolExecutor(LOAD_CONNECTIONS) as pool:
        list(pool.map(fill, [f"t{i}" for i in range(TABLES)]))
    return time.perf_counter() - started


# --- measuring -----------------------------------------------------------------------


def run_shell(command: str, *, capture: bool = False) -> str:
    """Run `command` in bash with pipefail, in a group of its own that an interruption kills."""
    proc = subprocess.Popen(["bash", "-o", "pipefail", "-c", command], text=True,
                            stdout=subprocess.PIPE if capture else None, start_new_session=True)
    try:
        out, _ = proc.communicate()
    except BaseException:  # Ctrl-C, SIGTERM: every process of the pipeline, not just bash
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command)
    return out or ""


def run_baseline(pipeline: str, dump: str, out: Path, meter: Meter) -> Run:
    """Time one shell pipeline; what it wrote to `out` is measured and removed."""
    command = BASELINES[pipeline].format(dump=dump, out=shlex.quote(str(out)))
    before = meter.read()
    run_shell(command)
    run = meter.run(pipeline, before)
    run.stored_bytes = out.stat().st_size if out.exists() else 0
    out.unlink(missing_ok=True)
    return run


def run_stashq(stack: Stack, namespace: str, meter: Meter) -> Run:
    """One backup through the real worker; the session's own timings go into `extra`."""
    before = meter.read()
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace,
                       timeout=BACKUP_TIMEOUT_S)
    run = meter.run("stashq", before)
    if result.returncode != 0:
        raise RuntimeError(f"stashq backup failed:\n{result.stdout}{result.stderr}\n"
                           f"worker log:\n{stack.worker.log()[-3000:]}")
    store = RedisStore.from_url(stack.redis_url)
    status = store.get(BackupSession, created(result.stdout), namespace).status
    snapshot = status["snapshot"]
    run.stored_bytes = int(snapshot["totalSize"])
    run.extra = {"session": float(status["sessionDurationSeconds"]),
                 "step": float(snapshot["processingTimeSeconds"]),
                 "raw_bytes": float(snapshot["rawSize"])}
    return run


def count_dump_bytes(dump: str) -> int:
    """Bytes of one dump, untimed (it also warms the buffer pool and page cache)."""
    return int(run_shell(f"{dump} | wc -c", capture=True))


def bench_size(size_mib: int, runs: int, stack: Stack, cnf: Path, root: Path,
               exits: contextlib.ExitStack) -> SizeResult:
    """Load a database of about `size_mib` of dump, then time every pipeline `runs` times."""
    database, namespace = f"bench_{size_mib}mib", f"bench-{size_mib}mib"
    rows = size_mib * MIB // (TABLES * DUMP_BYTES_PER_ROW)
    print(f"\n== {size_mib} MiB: loading {TABLES} x {rows:,} rows ...", flush=True)
    load_s = load_database(stack.mariadb, database, rows)
    bucket = f"bench-{size_mib}-{uuid.uuid4().hex[:12]}"
    stack.s3.make_bucket(bucket)
    setup = standard_setup(root / f"{namespace}.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    exits.callback(stack.worker.stop)
    stack.worker.start()
    assert stack.worker.proc is not None
    idle_rss = max(peak_rss_mib(stack.worker.proc.pid).values())
    dump = shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                       database])
    dump_bytes = count_dump_bytes(dump)
    print(f"   loaded in {load_s:.1f} s; dump is {dump_bytes / MIB:,.0f} MiB", flush=True)
    meter = Meter(stack.mariadb.running_pid() or -1, stack.s3.running_pid() or -1)
    worker_meter = Meter(meter.db_pid, meter.s3_pid, stack.worker.proc.pid)
    order, timed = [*BASELINES, "stashq"], []
    for run in range(runs):
        for pipeline in order[run % len(order):] + order[:run % len(order)]:  # interleaved
            timed.append(run_stashq(stack, namespace, worker_meter) if pipeline == "stashq"
                         else run_baseline(pipeline, dump, root / f"out.{pipeline}", meter))
            print(f"   run {run + 1} {LABELS[pipeline]:<26} {timed[-1].wall_s:7.2f} s",
                  flush=True)
    peaks = peak_rss_mib(stack.worker.proc.pid)
    stack.worker.stop()
    with stack.mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{database}`")
    return SizeResult(size_mib, rows, dump_bytes, load_s, timed, idle_rss, peaks)


# --- reporting -----------------------------------------------------------------------


def targets(results: list[SizeResult]) -> list[tuple[str, float, float, bool]]:
    """(what, measured, limit, met) for each of the issue's targets."""
    checks = []
    for r in results:
        to_raw, gzip_to = r.session_s / r.median("raw"), r.median("gzip") / r.session_s
        checks += [(f"{r.size_mib} MiB: StashQ session / raw dump (≤)", to_raw,
                    MAX_STASHQ_TO_RAW, to_raw <= MAX_STASHQ_TO_RAW),
                   (f"{r.size_mib} MiB: gzip / StashQ session (≥)", gzip_to,
                    MIN_GZIP_TO_STASHQ, gzip_to >= MIN_GZIP_TO_STASHQ),
                   (f"{r.size_mib} MiB: worker peak RSS MiB (<)", r.peak_mib,
                    MAX_PEAK_RSS_MIB, r.peak_mib < MAX_PEAK_RSS_MIB)]
    if len(results) > 1:
        spread = max(r.peak_mib for r in results) / min(r.peak_mib for r in results)
        checks.append(("peak RSS largest / smallest size (≤)", spread, MAX_RSS_SPREAD,
                       spread <= MAX_RSS_SPREAD))
    return checks


def table_rows(r: SizeResult) -> list[tuple[str, float, str, str, str]]:
    """(label, wall s, CPU columns, stored columns, RSS column) per line of the table."""
    rows = []
    for pipeline in [*BASELINES, "stashq"]:
        cpu = " ".join(f"{r.median(pipeline, attrgetter(key)):6.1f}"
                       for key in ("cpu_s", "db_cpu_s", "s3_cpu_s"))
        stored = r.median(pipeline, attrgetter("stored_bytes"))
        size = f"{stored / MIB:10.1f} {r.dump_bytes / stored:6.2f}x" if stored else ""
        rss = f"{r.peak_mib:6.0f} (idle {r.idle_rss_mib:.0f})" if pipeline == "stashq" else ""
        rows.append((LABELS[pipeline], r.median(pipeline), cpu, size, rss))
    rows += [(LABELS[part], r.median("stashq", _extra(part)), "", "", "")
             for part in ("session", "step")]
    return rows


def print_size(r: SizeResult) -> None:
    raw = r.median("raw")
    print(f"\n{r.size_mib} MiB requested: dump {r.dump_bytes / MIB:,.0f} MiB "
          f"({TABLES} x {r.rows:,} rows), loaded in {r.load_s:.1f} s; "
          f"median of {len(r.runs) // (len(BASELINES) + 1)} run(s)")
    print(f"{'pipeline':<26} {'wall s':>7} {'x raw':>6} {'CPU s':>6} {'DB s':>6} {'S3 s':>6} "
          f"{'stored MiB':>10} {'smaller':>7} {'peak RSS MiB':>12}")
    for label, wall, cpu, size, rss in table_rows(r):
        print(f"{label:<26} {wall:7.2f} {wall / raw:6.2f} {cpu:20} {size:18} {rss}".rstrip())


def report(results: list[SizeResult]) -> None:
    for r in results:
        print_size(r)
    checks = targets(results)
    print("\ntargets (the issue's):")
    for what, value, limit, met in checks:
        print(f"  {what:<44} {value:7.2f}  limit {limit:g}  {'PASS' if met else 'MISS'}")
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "sizes": [asdict(r) for r in results],
        "targets": [dict(zip(("what", "value", "limit", "met"), c, strict=True))
                    for c in checks]}, indent=2))
    print(f"\nwrote {RESULTS_PATH}")


# --- main ----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backup",
                                     description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--size-mib", type=int, help="one dump size, MiB")
    which.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES_MIB)),
                       help="comma-separated dump sizes, MiB (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help="runs of each pipeline per size; medians are shown (%(default)s)")
    args = parser.parse_args(argv)
    args.sizes = [args.size_mib] if args.size_mib else [int(s) for s in args.sizes.split(",")]
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-bench-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)  # runs last
        print(f"starting servers in {root} ...", flush=True)
        mariadb, redis, s3, pushgateway = start_servers(
            root, max(args.sizes) + BUFFER_POOL_SLACK_MIB, exits)
        env = stashq_env(redis, pushgateway, root)
        cnf = exits.enter_context(defaults_file(ConnectionInfo(
            mariadb.host, mariadb.port, mariadb.user, mariadb.password)))
        results = []
        for size in args.sizes:
            worker = Worker(env, root / f"worker-{size}.log")  # fresh: VmHWM is per size
            stack = Stack(env, worker, mariadb, s3, pushgateway, redis.url)
            results.append(bench_size(size, args.runs, stack, cnf, root, exits))
        report(results)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
