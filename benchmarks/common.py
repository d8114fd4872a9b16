"""What the benchmarks share: servers, synthetic data, meters, the baselines' command
lines, and StashQ driven through the real worker and CLI.

`bench_backup` (`make bench`, the suite) and `bench_parallel` (`make bench-parallel`)
import from here, so both measure the same way. Servers, worker and CLI are the test
suite's own (`devstack/servers`, `tests/integration`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from devstack.resources import backup_configuration, standard_setup
from devstack.servers import MariaDBServer, Pushgateway, RedisServer, S3Ports, S3Server, free_port
from devstack.stack import Stack, Worker, created
from devstack.stack import stashq_env as devstack_env
from workers.engines.base import ConnectionInfo, defaults_file
from workers.state.redis import RedisStore
from workflows.resources import BackupSession, RestoreSession

MIB = 2**20
#: InnoDB tables the synthetic database is spread over.
TABLES = 8
#: Dump bytes per synthetic row (measured: 110,049,915 bytes for 500,000 rows).
DUMP_BYTES_PER_ROW = 220
#: Connections filling tables at once: the generation is server CPU, 2 cores here.
LOAD_CONNECTIONS = 2
#: Buffer pool beyond what it must hold, MiB: the data stays in memory, as in the notes.
BUFFER_POOL_SLACK_MIB = 512
#: Seconds one backup or restore may take before the benchmark gives up.
TIMEOUT_S = 1800
#: mydumper's and myloader's threads: the issue's baseline, as many as the cores here.
PEER_THREADS = 2

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

#: The peers' command lines. `{cnf}` is a 0600 option file, `{db}` the source database,
#: `{target}` an empty database to restore into, `{file}` a plain dump, `{dir}` and
#: `{out}` a mydumper directory.
MYDUMPER = (f"mydumper --defaults-file={{cnf}} -B {{db}} -t {PEER_THREADS} -G -E -R "
            "--trx-consistency-only -v 1 -o {out}")
MYLOADER = (f"myloader --defaults-file={{cnf}} -d {{dir}} -B {{target}} -t {PEER_THREADS} "
            "-o -v 1")
MARIADB_LOAD = "mariadb --defaults-file={cnf} {target} < {file}"


class BenchMariaDB(MariaDBServer):
    """The test server with the data in memory and loading fast (no durability needed)."""

    def __init__(self, data_dir: Path, port: int, buffer_pool_mib: int) -> None:
        super().__init__(data_dir, port)
        self.buffer_pool_mib = buffer_pool_mib

    def _command(self) -> list[str]:
        return [*super()._command(), f"--innodb-buffer-pool-size={self.buffer_pool_mib}M",
                "--innodb-log-file-size=1G", "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0"]


def buffer_pool_mib(wanted_mib: int) -> int:
    """`wanted_mib` + slack, but at most half the machine's memory (4 GiB dumps on a small
    machine): beyond that the buffer pool would push the page cache and the worker out."""
    with contextlib.suppress(OSError, ValueError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB
        return min(wanted_mib + BUFFER_POOL_SLACK_MIB, max(256, total // 2))
    return wanted_mib + BUFFER_POOL_SLACK_MIB


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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


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

    def time(self, pipeline: str, action: Callable[[], object]) -> Run:
        before = self.read()
        action()
        return self.run(pipeline, before)


def meters(stack: Stack) -> tuple[Meter, Meter]:
    """A meter for shell pipelines, and one that adds the running worker's group."""
    assert stack.worker.proc is not None
    meter = Meter(stack.mariadb.running_pid() or -1, stack.s3.running_pid() or -1)
    return meter, Meter(meter.db_pid, meter.s3_pid, stack.worker.proc.pid)


# --- setting up ----------------------------------------------------------------------


def start_servers(root: Path, pool_mib: int, exits: contextlib.ExitStack
                  ) -> tuple[BenchMariaDB, RedisServer, S3Server, Pushgateway]:
    servers = (BenchMariaDB(root / "mariadb", free_port(), pool_mib),
               RedisServer(root / "redis", free_port()), S3Server(root / "s3", S3Ports.free()),
               Pushgateway(root / "pushgateway", free_port()))
    for server in servers:
        exits.callback(server.stop)  # before start: a half-started server is stopped too
        server.start()
    return servers


def stashq_env(redis: RedisServer, pushgateway: Pushgateway, root: Path,
               zstd_level: int = 1) -> dict[str, str]:
    """The worker's and CLI's environment: product defaults but for where things are."""
    return devstack_env(redis.url, pushgateway, root, STASHQ_ZSTD_LEVEL=str(zstd_level))


def client_options(mariadb: MariaDBServer) -> AbstractContextManager[Path]:
    """A 0600 option file with the server's root login, as StashQ writes one for its
    clients: the baselines' `--defaults-file=CNF` (credentials never in argv)."""
    return defaults_file(ConnectionInfo(mariadb.host, mariadb.port, mariadb.user,
                                        mariadb.password))


def rotations(order: list[str], runs: int) -> list[tuple[int, str]]:
    """(run, pipeline) for `runs` runs of `order`, rotated by one each run (interleaved)."""
    return [(run, p) for run in range(runs)
            for p in order[run % len(order):] + order[:run % len(order)]]


def env_assignments(parser: argparse.ArgumentParser, flag: str, items: list[str], *,
                    prefix: str = "") -> dict[str, str]:
    """`NAME=VALUE` options (for the worker and CLI) as a dict; a usage error names the
    item that has no "=" or a name without `prefix`."""
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith(prefix):
            parser.error(f"{flag} takes {prefix}NAME=VALUE, not {item!r}")
        env[name] = value
    return env


def rows_for(size_mib: int) -> int:
    """Rows per table for a dump of about `size_mib`."""
    return size_mib * MIB // (TABLES * DUMP_BYTES_PER_ROW)


def load_database(mariadb: MariaDBServer, database: str, rows: int) -> float:
    """Create `database` with TABLES tables of `rows` rows, generated by the server; seconds."""
    started = time.perf_counter()
    recreate(mariadb, database)

    def fill(table: str) -> None:
        with mariadb.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(TABLE_SQL.format(table=table))
            cursor.execute(FILL_SQL.format(table=table, rows=rows))

    with ThreadPoolExecutor(LOAD_CONNECTIONS) as pool:
        list(pool.map(fill, [f"t{i}" for i in range(TABLES)]))
    return time.perf_counter() - started


def recreate(mariadb: MariaDBServer, database: str) -> None:
    with mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}`")


def drop(mariadb: MariaDBServer, database: str) -> None:
    with mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")


def apply_resources(stack: Stack, root: Path, database: str, namespace: str,
                    degrees: tuple[int, ...]) -> str:
    """The standard resources in a bucket of their own (Repository "repo", AppBinding "db",
    BackupConfiguration "nightly": one stream), plus "parallelN" per degree; the bucket."""
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    stack.s3.make_bucket(bucket)
    setup = standard_setup(root / f"{namespace}.yaml", stack.s3, stack.mariadb, bucket, database)
    extra = [backup_configuration(f"parallel{n}", "repo", "db", database).rstrip("\n")
             + f'\n      - {{name: parallel, value: "{n}"}}\n' for n in degrees]
    setup.write_text("---\n".join([setup.read_text(), *extra]))
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    return bucket


def bucket_bytes(s3: S3Server, bucket: str, prefix: str = "") -> int:
    """Bytes of the objects under `prefix` in `bucket`."""
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(int(obj["Size"]) for page in pages for obj in page.get("Contents", []))


def empty_bucket(s3: S3Server, bucket: str, prefix: str = "") -> None:
    """Delete the objects under `prefix` in `bucket` (the disk a 4 GiB size needs)."""
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


# --- running -------------------------------------------------------------------------


def run_shell(command: str, *, capture: bool = False, env: Mapping[str, str] | None = None
              ) -> str:
    """Run `command` in bash with pipefail, in a group of its own that an interruption kills."""
    proc = subprocess.Popen(["bash", "-o", "pipefail", "-c", command], text=True,
                            stdout=subprocess.PIPE if capture else None, start_new_session=True,
                            env=None if env is None else dict(env))
    try:
        out, _ = proc.communicate()
    except BaseException:  # Ctrl-C, SIGTERM: every process of the pipeline, not just bash
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command)
    return out or ""


def count_dump_bytes(dump: str) -> int:
    """Bytes of one dump, untimed (it also warms the buffer pool and page cache)."""
    return int(run_shell(f"{dump} | wc -c", capture=True))


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else \
        (path.stat().st_size if path.exists() else 0)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _session_failed(stack: Stack, what: str, result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"stashq {what} failed:\n{result.stdout}{result.stderr}\n"
                           f"worker log:\n{stack.worker.log()[-3000:]}")


def stashq_backup(stack: Stack, namespace: str, config: str, pipeline: str,
                  meter: Meter) -> tuple[Run, str]:
    """`stashq backup CONFIG --wait` through the real worker, timed by `meter`; the Run
    (session and step seconds in `extra`) and the snapshot's name."""
    before = meter.read()
    result = stack.cli("backup", config, "--wait", namespace=namespace, timeout=TIMEOUT_S)
    run = meter.run(pipeline, before)
    _session_failed(stack, f"backup {config}", result)
    store = RedisStore.from_url(stack.redis_url)
    status = store.get(BackupSession, created(result.stdout), namespace).status
    snapshot = status["snapshot"]
    run.stored_bytes = int(snapshot["totalSize"])
    run.extra = {"session": float(status["sessionDurationSeconds"]),
                 "step": float(snapshot["processingTimeSeconds"]),
                 "raw_bytes": float(snapshot["rawSize"])}
    return run, str(snapshot["name"])


def stashq_restore(stack: Stack, namespace: str, snapshot: str, target: str, pipeline: str,
                   meter: Meter) -> Run:
    """`stashq restore --snapshot SNAPSHOT --database TARGET --wait`, timed by `meter`
    (session seconds in `extra`); a parallel snapshot loads all its data streams at once,
    the default of the restore's `parallel` param."""
    before = meter.read()
    result = stack.cli("restore", "--repository", "repo", "--target", "db", "--snapshot",
                       snapshot, "--database", target, "--wait", namespace=namespace,
                       timeout=TIMEOUT_S)
    run = meter.run(pipeline, before)
    _session_failed(stack, f"restore {snapshot}", result)
    status = RedisStore.from_url(stack.redis_url).get(
        RestoreSession, created(result.stdout), namespace).status
    run.extra = {"session": float(status["sessionDurationSeconds"])}
    return run


def fresh_worker_peak(stack: Stack, action: Callable[[Meter], object]) -> tuple[float, float]:
    """(idle, peak) RSS of a fresh worker group that does only `action`, MiB: the largest
    VmHWM of its processes once it is ready, and after `action`. VmHWM only grows, so a
    worker that ran other pipelines first cannot tell one pipeline's peak from another's.

    The worker gets a log of its own: `Worker.start` waits for "ready." in its log, which
    a reused log already holds. `stack.worker` is stopped, and is itself again after."""
    timed = stack.worker
    timed.stop()
    stack.worker = Worker(timed.env, timed.log_path.with_name(
        f"{timed.log_path.stem}.{uuid.uuid4().hex[:8]}.log"))
    try:
        stack.worker.start()
        assert stack.worker.proc is not None
        idle = max(peak_rss_mib(stack.worker.proc.pid).values())
        action(meters(stack)[1])
        return idle, max(peak_rss_mib(stack.worker.proc.pid).values())
    finally:
        stack.worker.stop()
        stack.worker = timed


# --- verifying -----------------------------------------------------------------------


def table_checksums(mariadb: MariaDBServer, database: str) -> dict[str, tuple[int, int]]:
    """{table: (rows, CHECKSUM TABLE)} of every base table of `database`."""
    sums = {}
    with mariadb.connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                       " AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", (database,))
        for (table,) in cursor.fetchall():
            cursor.execute(f"SELECT COUNT(*) FROM `{table}`")
            (rows,) = cursor.fetchone()
            cursor.execute(f"CHECKSUM TABLE `{table}`")
            sums[str(table)] = (int(rows), int(cursor.fetchone()[1]))
    return sums


def verify_restored(mariadb: MariaDBServer, target: str, source: Mapping[str, tuple[int, int]],
                    what: str) -> None:
    """Fail unless `target` holds the source's tables, rows and checksums: a restore that
    loaded nothing (or half) must not show up as a fast time."""
    problem = restore_mismatch(source, table_checksums(mariadb, target))
    if problem:
        raise RuntimeError(f"{what}: {target} {problem}")


def restore_mismatch(source: Mapping[str, tuple[int, int]],
                     restored: Mapping[str, tuple[int, int]]) -> str | None:
    """What differs between two `table_checksums`, or None if they match; a source without
    rows is a mismatch too (nothing would prove that a restore loaded anything)."""
    if not any(rows for rows, _ in source.values()):
        return "cannot be checked: the source has no rows"
    differ = sorted(t for t in source.keys() | restored.keys()
                    if source.get(t) != restored.get(t))
    if not differ:
        return None
    return (f"differs from the source in {differ}: (rows, checksum) restored "
            f"{[restored.get(t) for t in differ]}, source {[source.get(t) for t in differ]}")
