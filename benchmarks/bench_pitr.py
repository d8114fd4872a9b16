"""Point-in-time recovery, measured: archive lag under a steady write load, and replay
speed against plain ``mariadb-binlog | mariadb``, in the same run on the same servers.

    python -m benchmarks.bench_pitr                    # ~4 min on 2 cores
    python -m benchmarks.bench_pitr --rate 100 --seconds 60 --interval 5
    python -m benchmarks.bench_pitr --transactions 40000 --runs 3

1. Archive lag. A real ``stashq beat`` and ``stashq worker`` archive the binlog of a
   MariaDB (``--log-bin``, ROW) every ``--interval`` seconds while a writer commits
   ``--rate`` transactions a second for ``--seconds``. A commit's lag is the time from
   its commit until the configuration's status first says it is archived (the segment
   is stored and its manifest written before that): the recovery point's age. Median
   and max over every commit; the bound to expect is the interval plus one run.
2. Replay speed. ``--transactions`` transactions of 10 rows each go into one binlog
   file, archived in one run; then, interleaved ``--runs`` times each into an emptied
   table on a second server: StashQ's restore to the last GTID (the worker's replay:
   repository → filter → ``mariadb-binlog -`` → ``mariadb``; its seconds as the status
   records them, and the whole session's), and ``mariadb-binlog --database=D
   --rewrite-db=D->T FILE | mariadb`` on the same binlog file on disk. Both results are
   checked row for row (count and CHECKSUM TABLE).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from benchmarks.common import (
    TIMEOUT_S,
    BenchMariaDB,
    client_options,
    rotations,
    run_shell,
    stashq_env,
    table_checksums,
)
from devstack.resources import appbinding, backup_configuration, s3_repository, secret
from devstack.servers import Pushgateway, RedisServer, S3Ports, S3Server, Server, free_port
from devstack.stack import STASHQ, Stack, Worker, created
from workers.state.redis import RedisStore
from workflows.gtids import Gtid
from workflows.resources import BackupConfiguration, RestoreSession

NAMESPACE = "bench"
SOURCE_DB = "src"
#: Rows per transaction of the replay load, and its bytes per row (a plausible order row).
ROWS_PER_TRANSACTION = 10
TABLE_SQL = ("CREATE TABLE t (id BIGINT PRIMARY KEY, at BIGINT NOT NULL, note VARCHAR(200) "
             "NOT NULL) ENGINE=InnoDB")
#: Seconds between two looks at the archive's status while measuring lag.
POLL_S = 0.05

ServerT = TypeVar("ServerT", bound=Server)


@dataclass
class Servers:
    source: BenchMariaDB
    target: BenchMariaDB
    stack: Stack


def start(root: Path, exits: contextlib.ExitStack) -> Servers:
    def started(server: ServerT) -> ServerT:  # each port taken just before its server starts
        exits.callback(server.stop)
        server.start()
        return server

    source = BenchMariaDB(root / "source", free_port(), 1024)
    source.server_id = 7
    started(source)
    target = started(BenchMariaDB(root / "target", free_port(), 1024))
    redis = started(RedisServer(root / "redis", free_port()))
    s3 = started(S3Server(root / "s3", S3Ports.free()))
    gateway = started(Pushgateway(root / "pushgateway", free_port()))
    env = stashq_env(redis, gateway, root)
    worker = Worker(env, root / "worker.log")
    exits.callback(worker.stop)
    worker.start()
    return Servers(source, target, Stack(env, worker, target, s3, gateway, redis.url))


def apply(servers: Servers, root: Path, interval_s: int) -> None:
    stack = servers.stack
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    stack.s3.make_bucket(bucket)
    config = backup_configuration("nightly", "repo", "db", SOURCE_DB)
    config += f"  binlogArchive:\n    intervalSeconds: {interval_s}\n"
    docs = [secret("db-auth", username="root", password=""),
            secret("s3-auth", AWS_ACCESS_KEY_ID=stack.s3.access_key,
                   AWS_SECRET_ACCESS_KEY=stack.s3.secret_key),
            appbinding("db", servers.source, "db-auth"),
            appbinding("scratch", servers.target, "db-auth"),
            s3_repository("repo", stack.s3, bucket, "s3-auth"), config]
    path = root / "pitr.yaml"
    path.write_text("---\n".join(docs))
    stack.cli("apply", "-f", str(path), namespace=NAMESPACE, check=True)


def archived_seq(stack: Stack) -> int:
    status = RedisStore.from_url(stack.redis_url).get(
        BackupConfiguration, "nightly", NAMESPACE).status.get("binlogArchive") or {}
    gtid = (status.get("position") or {}).get("gtid") or ""
    return max((Gtid.parse(g).seq for g in gtid.split(",") if g), default=0)


def measure_lag(servers: Servers, rate: float, seconds: float) -> list[float]:
    """Commit ``rate`` transactions a second for ``seconds`` with beat archiving; each
    commit's lag in seconds."""
    stack = servers.stack
    beat = subprocess.Popen([STASHQ, "beat", "-n", NAMESPACE], env=stack.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    commits: list[tuple[int, float]] = []
    archived: dict[int, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or (commits and max(archived, default=0) < commits[-1][0]):
            seq = archived_seq(stack)
            if seq not in archived:
                archived[seq] = time.time()
            time.sleep(POLL_S)
            if done.is_set() and time.time() > commits[-1][1] + 600:
                return

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        with servers.source.connect(SOURCE_DB) as conn, conn.cursor() as cursor:
            started, n = time.monotonic(), 0
            while time.monotonic() - started < seconds:
                n += 1
                cursor.execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP(), REPEAT('x', 100))",
                               (10**9 + n,))
                cursor.execute("SELECT @@last_gtid")
                commits.append((Gtid.parse(cursor.fetchone()[0]).seq, time.time()))
                time.sleep(max(0.0, started + n / rate - time.monotonic()))
        done.set()
        poller.join(700)
    finally:
        beat.terminate()
        beat.wait(30)
    points = sorted(archived.items())
    return [next(at for seq, at in points if seq >= commit) - committed
            for commit, committed in commits]


def replay_load(servers: Servers, transactions: int) -> tuple[str, str]:
    """The replay load in a binlog file of its own; (that file's path, the last GTID)."""
    with servers.source.connect(SOURCE_DB) as conn, conn.cursor() as cursor:
        cursor.execute("FLUSH BINARY LOGS")
        cursor.execute("SHOW MASTER STATUS")
        file = str(cursor.fetchone()[0])
        for i in range(transactions):
            base = i * ROWS_PER_TRANSACTION
            cursor.execute("INSERT INTO t VALUES " + ", ".join(
                f"({base + r}, UNIX_TIMESTAMP(), CONCAT('order ', {base + r}, ' ', "
                f"MD5({base + r}), ' for customer ', {(base + r) % 5000}))"
                for r in range(ROWS_PER_TRANSACTION)))
        cursor.execute("SELECT @@last_gtid")
        last = str(cursor.fetchone()[0])
        cursor.execute("FLUSH BINARY LOGS")
    return str(servers.source.data_dir / "data" / file), last


def stashq_replay(servers: Servers, target: str, gtid: str) -> tuple[float, float]:
    """(replay seconds as the worker measured them, whole restore session seconds)."""
    stack = servers.stack
    result = stack.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                       target, "--to-gtid", gtid, "--wait", namespace=NAMESPACE,
                       timeout=TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"restore failed:\n{result.stdout}{result.stderr}\n"
                           f"{stack.worker.log()[-3000:]}")
    status = RedisStore.from_url(stack.redis_url).get(
        RestoreSession, created(result.stdout), NAMESPACE).status
    return float(status["pointInTime"]["replaySeconds"]), float(status["sessionDurationSeconds"])


def plain_replay(servers: Servers, binlog: str, target: str) -> float:
    with client_options(servers.target) as cnf:
        with servers.target.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{target}`")
            cursor.execute(f"CREATE TABLE `{target}`.{TABLE_SQL.removeprefix('CREATE TABLE ')}")
        started = time.perf_counter()
        run_shell(f"mariadb-binlog --database={SOURCE_DB} --rewrite-db='{SOURCE_DB}->{target}' "
                  f"{binlog} | mariadb --defaults-file={cnf} --max-allowed-packet=1G")
        return time.perf_counter() - started


def drop(servers: Servers, target: str) -> None:
    with servers.target.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{target}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="transactions a second")
    parser.add_argument("--seconds", type=float, default=60, help="of steady writes")
    parser.add_argument("--interval", type=int, default=5,
                        help="spec.binlogArchive.intervalSeconds")
    parser.add_argument("--transactions", type=int, default=20000,
                        help="of the replay load (10 rows each)")
    parser.add_argument("--runs", type=int, default=3, help="of each replay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stashq-bench-pitr-") as tmp, \
            contextlib.ExitStack() as exits:
        root = Path(tmp)
        servers = start(root, exits)
        with servers.source.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {SOURCE_DB}")
            cursor.execute(f"CREATE TABLE {SOURCE_DB}.{TABLE_SQL.removeprefix('CREATE TABLE ')}")
        apply(servers, root, args.interval)
        servers.stack.cli("backup", "nightly", "--wait", namespace=NAMESPACE, check=True)
        lags = measure_lag(servers, args.rate, args.seconds)
        print(f"archive lag, {len(lags)} commits at {args.rate:g}/s over {args.seconds:g} s, "
              f"interval {args.interval} s: median {statistics.median(lags):.2f} s, "
              f"max {max(lags):.2f} s")

        with servers.source.connect(SOURCE_DB) as conn:
            conn.cursor().execute("DELETE FROM t")
        servers.stack.cli("backup", "nightly", "--wait", namespace=NAMESPACE, check=True)
        binlog, last = replay_load(servers, args.transactions)
        servers.stack.cli("archive", "nightly", namespace=NAMESPACE, check=True)
        source = table_checksums(servers.source, SOURCE_DB)
        size = Path(binlog).stat().st_size
        times: dict[str, list[float]] = {"stashq": [], "session": [], "plain": []}
        for run, pipeline in rotations(["stashq", "plain"], args.runs):
            target = f"{pipeline}_{run}"
            if pipeline == "stashq":
                replay_s, session_s = stashq_replay(servers, target, last)
                times["stashq"].append(replay_s)
                times["session"].append(session_s)
            else:
                times["plain"].append(plain_replay(servers, binlog, target))
            if table_checksums(servers.target, target) != source:
                raise RuntimeError(f"{pipeline} run {run}: {target} differs from the source")
            drop(servers, target)
        ours, plain = statistics.median(times["stashq"]), statistics.median(times["plain"])
        print(f"replay of {args.transactions} transactions ({size / 2**20:.1f} MiB of binlog), "
              f"median of {args.runs}: stashq {ours:.2f} s (whole restore session "
              f"{statistics.median(times['session']):.2f} s), plain mariadb-binlog | mariadb "
              f"{plain:.2f} s; ratio {ours / plain:.2f}")


if __name__ == "__main__":
    main()
