"""Parallel mode, the user's story: a backup with param ``parallel`` stores a stream per
dump client, all read at one moment, and restores equal to the source, even while
the application keeps writing; one failing client leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

from devstack.compare import describe, differences
from devstack.resources import appbinding, standard_setup
from devstack.sample import create_sample
from devstack.servers import MariaDBServer
from devstack.stack import Stack, created
from tests.integration.test_failures import backup_status, open_uploads
from workflows.snapshots import Snapshot


def parallel_setup(stack: Stack, tmp_path: Path, bucket: str, databases: str,
                   parallel: int) -> Path:
    """The standard resources, the BackupConfiguration asking for ``parallel`` clients."""
    path = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, databases)
    line = f"      - {{name: databases, value: {json.dumps(databases)}}}\n"
    text = path.read_text()
    assert line in text
    path.write_text(text.replace(line, line + f'      - {{name: parallel, value: "{parallel}"}}\n'))
    return path


def manifest(stack: Stack, bucket: str, snapshot_id: str) -> Snapshot:
    client = stack.s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    key = next(k for k in keys if k.endswith(f"/snapshots/{snapshot_id}.json"))
    return Snapshot.from_json(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def backup(stack: Stack, namespace: str) -> str:
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr + stack.worker.log()[-3000:]
    return created(result.stdout)


def test_parallel_backup_restores_equal_with_big_tables_cut_into_key_ranges(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=600)
        conn.cursor().execute(f"ANALYZE TABLE `{database}`.attachments, `{database}`.orders, "
                              f"`{database}`.customers")  # sizes as the planner will see them
    setup = parallel_setup(stack, tmp_path, bucket, database, parallel=4)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    name = backup(stack, namespace)

    snapshot = manifest(stack, bucket, name)
    roles = [s.role for s in snapshot.streams]
    assert roles[0] == "schema" and roles[-2:] == ["post-data", "post-data"]  # + views
    data = [s for s in snapshot.streams if s.role == "data"]
    assert 2 <= len(data) <= 4 and any(s.where for s in data)  # the biggest table was cut
    tables = sorted(t for s in data for t in s.tables)
    assert {f"{database}.{t}" for t in ("attachments", "customers", "orders")} == set(tables)

    restored = f"{database}_restored"
    stack.cli("restore", "--repository", "repo", "--target", "db", "--database", restored,
              "--wait", namespace=namespace, check=True, timeout=120)
    with stack.mariadb.connect() as conn:
        try:  # order_count would double if the trigger existed while orders were loaded
            assert differences(conn, database, restored) == []
        finally:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{restored}`")


ACCOUNTS = 40_000
OPENING_BALANCE = 1_000


def create_bank(conn: object, database: str) -> None:
    """Accounts and a transfer log: every transfer moves money between the two halves of
    the accounts (which the plan dumps as different key ranges) and logs itself."""
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"USE `{database}`")
        cur.execute("CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL, "
                    "moves INT NOT NULL DEFAULT 0, owner CHAR(120) NOT NULL)")
        cur.execute(f"INSERT INTO accounts SELECT seq, {OPENING_BALANCE}, 0, "
                    f"CONCAT('owner ', seq) FROM seq_1_to_{ACCOUNTS}")
        cur.execute("CREATE TABLE transfers (id INT AUTO_INCREMENT PRIMARY KEY, src INT NOT NULL, "
                    "dst INT NOT NULL, amount INT NOT NULL)")
        cur.execute("ANALYZE TABLE accounts, transfers")


@contextlib.contextmanager
def transfers_running(stack: Stack, database: str) -> Iterator[list[int]]:
    """Three connections moving money until the block ends; yields the running count."""
    done, stop = [0], threading.Event()

    def transfer(seed: int) -> None:
        rng = random.Random(seed)
        with stack.mariadb.connect(database) as conn, conn.cursor() as cur:
            while not stop.is_set():
                src, dst = rng.randint(1, ACCOUNTS // 2), rng.randint(ACCOUNTS // 2 + 1, ACCOUNTS)
                src, dst = (src, dst) if rng.random() < 0.5 else (dst, src)
                amount = rng.randint(1, 50)
                conn.begin()
                cur.execute("UPDATE accounts SET balance = balance - %s, moves = moves + 1 "
                            "WHERE id = %s", (amount, src))
                cur.execute("UPDATE accounts SET balance = balance + %s, moves = moves + 1 "
                            "WHERE id = %s", (amount, dst))
                cur.execute("INSERT INTO transfers (src, dst, amount) VALUES (%s, %s, %s)",
                            (src, dst, amount))
                conn.commit()
                done[0] += 1

    threads = [threading.Thread(target=transfer, args=(seed,), daemon=True) for seed in (1, 2, 3)]
    for thread in threads:
        thread.start()
    try:
        yield done
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def test_a_parallel_snapshot_is_one_moment_while_transfers_commit(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        create_bank(conn, database)
    setup = parallel_setup(stack, tmp_path, bucket, database, parallel=4)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    with transfers_running(stack, database) as done:
        before = done[0]
        name = backup(stack, namespace)
        during = done[0] - before
    assert during > 20, "no transfer committed during the backup: the test proves nothing"
    data = [s for s in manifest(stack, bucket, name).streams if s.role == "data"]
    assert len([s for s in data if s.where]) >= 2  # accounts in key ranges, read separately

    restored = f"{database}_restored"
    stack.cli("restore", "--repository", "repo", "--target", "db", "--database", restored,
              "--wait", namespace=namespace, check=True, timeout=120)
    with stack.mariadb.connect(restored) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT SUM(balance), SUM(moves) FROM accounts")
            total, moves = cur.fetchone()
            cur.execute("SELECT COUNT(*) FROM transfers")
            (logged,) = cur.fetchone()
        finally:
            cur.execute(f"DROP DATABASE `{restored}`")
    assert logged > 0
    assert (int(total), int(moves)) == (ACCOUNTS * OPENING_BALANCE, 2 * logged)


def test_a_parallel_snapshot_of_two_databases_restores_them_by_name_elsewhere(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        own_mariadb: MariaDBServer) -> None:
    other = f"{database}_b"
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=120)
        create_sample(conn, other, customers=60, seed=11)
    try:
        setup = parallel_setup(stack, tmp_path, bucket, f"{database},{other}", parallel=2)
        setup.write_text(setup.read_text() + "---\n" + appbinding("elsewhere", own_mariadb,
                                                                  "db-auth"))
        stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
        backup(stack, namespace)
        stack.cli("restore", "--repository", "repo", "--target", "elsewhere", "--wait",
                  namespace=namespace, check=True, timeout=120)
        with stack.mariadb.connect() as source, own_mariadb.connect() as copy:
            for db in (database, other):
                assert describe(copy, db) == describe(source, db)
    finally:
        with stack.mariadb.connect() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{other}`")


def test_one_failing_client_fails_the_backup_and_leaves_nothing(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=60)
        # Its definition stays (the schema dumps), its rows are unreadable: one client fails.
        conn.cursor().execute(f"ALTER TABLE `{database}`.attachments DISCARD TABLESPACE")
    setup = parallel_setup(stack, tmp_path, bucket, database, parallel=3)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace, timeout=120)
    assert result.returncode == 8, result.stdout + result.stderr
    status = backup_status(stack, namespace, created(result.stdout))
    assert status["phase"] == "Failed"
    assert "mariadb-dump" in str(status["reason"]) and "attachments" in str(status["reason"])
    objects = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in objects if "/snapshots/" in o["Key"]] == []
    assert open_uploads(stack, bucket) == []
    # The streams that finished left chunks that another backup may already reuse: not
    # deleted by the failed backup, but garbage that check lists and prune removes.
    check = stack.cli("check", "repo", namespace=namespace)
    assert check.returncode == 0 and "0 snapshot(s)" in check.stdout, check.stdout
    assert "orphan: " in check.stdout
