"""Point-in-time recovery when things go wrong: a server that cannot be archived is
refused with what to fix; binlogs purged before they were archived are a gap, reported,
never replayed across, and archiving goes on; a worker killed between a segment's data
and its manifest loses nothing and archives nothing twice."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from devstack.servers import MariaDBServer
from devstack.stack import Deploy, Stack
from tests.integration.test_faults import eventually
from tests.integration.test_parallel_dump import backup
from tests.integration.test_pitr import (
    apply_pitr,
    archive,
    numbers,
    restore_to,
    server_coordinates,
)
from workers.state.redis import RedisStore
from workflows.binlogs import BinlogSegment
from workflows.gtids import Gtid
from workflows.resources import BackupConfiguration


def gtid_of_insert(server: MariaDBServer, db: str, number: int) -> str:
    with server.connect(db) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP())", (number,))
        cursor.execute("SELECT @@last_gtid")
        return str(cursor.fetchone()[0])


def purge_binlogs(server: MariaDBServer) -> None:
    """Rotate, then purge every binlog but the new one (a file is purged only once
    InnoDB's binlog checkpoint has passed it: try until it has)."""
    with server.connect() as conn, conn.cursor() as cursor:
        cursor.execute("FLUSH BINARY LOGS")
        cursor.execute("SHOW MASTER STATUS")
        current = cursor.fetchone()[0]
        deadline = time.monotonic() + 30
        while True:
            cursor.execute(f"PURGE BINARY LOGS TO '{current}'")
            cursor.execute("SHOW BINARY LOGS")
            if [row[0] for row in cursor.fetchall()] == [current]:
                return
            assert time.monotonic() < deadline, "the binlogs were not purged"
            time.sleep(0.2)


def archive_status(redis_url: str, namespace: str) -> dict[str, object]:
    return RedisStore.from_url(redis_url).get(BackupConfiguration, "nightly",
                                              namespace).status["binlogArchive"]


def snapshot_then_row_2(stack: Stack, server: MariaDBServer, namespace: str, db: str,
                        bucket: str, tmp_path: Path) -> None:
    """"nightly" archiving ``db`` of ``server``: a snapshot (row 1), then row 2."""
    apply_pitr(stack, namespace, tmp_path, server, stack.mariadb, bucket, db)
    backup(stack, namespace)
    gtid_of_insert(server, db, 2)


def archive_gauge(stack: Stack, name: str, namespace: str) -> float:
    """The value the Pushgateway holds for ``name`` of BackupConfiguration "nightly"."""
    pattern = re.compile(rf'^{name}{{[^}}]*invoker_name="nightly"[^}}]*namespace="{namespace}"'
                         r'[^}]*} (\S+)$', re.MULTILINE)
    found = pattern.findall(stack.pushgateway.metrics_text())
    assert len(found) == 1, (name, found)
    return float(found[0])


def test_a_server_without_binlog_is_refused(stack: Stack, namespace: str, database: str,
                                            bucket: str, tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, stack.mariadb, stack.mariadb, bucket, database)
    said = archive(stack, namespace, ok=False)
    assert "the server writes no binary log" in said and "start it with log_bin" in said, said
    status = archive_status(stack.redis_url, namespace)
    assert status["phase"] == "Failed" and "no binary log" in str(status["reason"])


def test_a_statement_binlog_is_refused_saying_what_it_risks(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db)
    with binlog_mariadb.connect() as conn:
        conn.cursor().execute("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        said = archive(stack, namespace, ok=False)
    finally:
        with binlog_mariadb.connect() as conn:
            conn.cursor().execute("SET GLOBAL binlog_format = 'ROW'")
    assert "binlog_format is STATEMENT, not ROW" in said and "NOW(), UUID()" in said, said


@pytest.mark.parametrize(("user", "grants", "expected"), [
    ("noslave", "SELECT, BINLOG MONITOR", ["user noslave lacks the REPLICATION SLAVE privilege"]),
    ("nomonitor", "SELECT, REPLICATION SLAVE", ["user nomonitor may not list the binary logs",
                                                "GRANT BINLOG MONITOR ON *.* TO the user"]),
])
def test_a_user_without_a_replication_privilege_is_refused_naming_it(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path, user: str, grants: str, expected: list[str]) -> None:
    binlog_mariadb.create_user(user, "pw", grants)
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db,
               user=user, password="pw")
    said = archive(stack, namespace, ok=False)
    assert all(part in said for part in expected), said
    assert "pw" not in said.replace("pitr", "")  # the password is in no message


#: A fault done to the server between two archive runs, what puts the server back for
#: the next tests (a second GTID domain stays in the binlog state until RESET MASTER),
#: and what the gap says.
FAULTS = {
    "reset-master": ("RESET MASTER", [], "a new binlog sequence (RESET MASTER"),
    "server-id": ("SET GLOBAL server_id = 8", ["SET GLOBAL server_id = 7"],
                  "changed from 7 to 8"),
    "gtid-domain": ("SET GLOBAL gtid_domain_id = 5", ["SET GLOBAL gtid_domain_id = 0",
                                                      "RESET MASTER"], "the GTID domain of"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_new_binlog_sequence_server_id_or_domain_is_a_gap_and_archiving_goes_on(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path, fault: str) -> None:
    statement, put_back, reason = FAULTS[fault]
    snapshot_then_row_2(stack, binlog_mariadb, namespace, source_db, bucket, tmp_path)
    archive(stack, namespace)
    archived, _, _ = server_coordinates(binlog_mariadb)
    with binlog_mariadb.connect() as conn:
        conn.cursor().execute(statement)
    try:
        resumed, _, _ = server_coordinates(binlog_mariadb)
        said = archive(stack, namespace)
        last = [gtid_of_insert(binlog_mariadb, source_db, n) for n in (3, 4)][-1]
        archive(stack, namespace)
    finally:
        with binlog_mariadb.connect() as conn, conn.cursor() as cursor:
            for undo in put_back:
                cursor.execute(undo)
    status = archive_status(stack.redis_url, namespace)
    assert status["gapCount"] == 1 and len(status["gaps"]) == 1, status  # type: ignore[arg-type]
    gap = status["gaps"][0]  # type: ignore[index]
    assert reason in gap["reason"] and f"gap: {gap['reason']}" in said, (gap, said)
    assert (gap["archived"], gap["resumed"]) == (archived, resumed)  # resumed where it stood
    assert status["position"]["gtid"].split(",").count(last) == 1, status  # type: ignore[index]
    assert archive_gauge(stack, "stashq_binlog_archive_gaps", namespace) == 1.0


def test_binlogs_purged_before_archiving_are_a_gap_that_no_restore_crosses(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    snapshot_then_row_2(stack, binlog_mariadb, namespace, source_db, bucket, tmp_path)
    archive(stack, namespace)
    lost = gtid_of_insert(binlog_mariadb, source_db, 3)       # never archived:
    purge_binlogs(binlog_mariadb)                            # purged
    said = archive(stack, namespace)
    status = archive_status(stack.redis_url, namespace)
    assert len(status["gaps"]) == 1, status  # type: ignore[arg-type]
    gap = status["gaps"][0]  # type: ignore[index]
    assert "purged before they were archived" in gap["reason"] and "gap:" in said
    assert gap["resumed"] == lost  # archiving resumed at the server's position then
    assert status["gapCount"] == 1, status
    assert archive_gauge(stack, "stashq_binlog_archive_gaps", namespace) == 1.0

    refused = stack.cli("restore", "--repository", "repo", "--target", "scratch",
                        "--database", f"{source_db}_x", "--to-gtid", lost, namespace=namespace)
    assert refused.returncode != 0
    assert f"GTID {lost} is outside the recoverable window" in refused.stderr
    assert "purged before they were archived" in refused.stderr, refused.stderr

    backup(stack, namespace)                                  # a snapshot after the gap
    after = gtid_of_insert(binlog_mariadb, source_db, 4)
    archive(stack, namespace)
    restore_to(stack, namespace, f"{source_db}_y", "--to-gtid", after)
    assert numbers(stack.mariadb, f"{source_db}_y") == [1, 2, 3, 4]
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{source_db}_y`")


def test_a_worker_killed_between_segment_data_and_manifest_loses_and_doubles_nothing(
        deploy: Deploy, binlog_mariadb: MariaDBServer, mariadb_server: MariaDBServer,
        namespace: str, source_db: str, bucket: str, tmp_path: Path) -> None:
    d = deploy(mariadb=binlog_mariadb)
    apply_pitr(d, namespace, tmp_path, binlog_mariadb, mariadb_server, bucket, source_db)
    worker = d.start_worker()
    d.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    worker.stop()
    for n in range(2, 12):
        gtid_of_insert(binlog_mariadb, source_db, n)
    doomed = d.start_worker(STASHQ_PAUSE_AT="before_segment_manifest:600")
    d.cli("archive", "nightly", "--no-wait", namespace=namespace, check=True)
    eventually(lambda: "test pause at before_segment_manifest" in doomed.log(),
               "the pause before the segment manifest", d)
    doomed.stop(signal.SIGKILL)
    client = d.s3.client()
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any("/binlogs/nightly/data/" in k for k in listed)       # its data, stored
    assert not any("/binlogs/nightly/segments/" in k for k in listed)  # but no segment

    d.start_worker()
    time.sleep(float(d.env["STASHQ_LOCK_LEASE_S"]) + 1)  # the dead worker's lease lapses
    last = gtid_of_insert(binlog_mariadb, source_db, 12)
    d.cli("archive", "nightly", namespace=namespace, check=True)
    d.cli("archive", "nightly", namespace=namespace, check=True)  # nothing new: no segment
    status = archive_status(d.redis_url, namespace)
    assert status["position"]["gtid"] == last and not status["gaps"], status  # type: ignore[index]
    assert status["segments"] == 1, status  # one segment, written once, all transactions

    result = d.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                   f"{source_db}_k", "--to-gtid", last, "--wait", namespace=namespace)
    assert result.returncode == 0, result.stdout + result.stderr + d.logs()[-3000:]
    assert numbers(mariadb_server, f"{source_db}_k") == list(range(1, 13))
    with mariadb_server.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{source_db}_k`")


def test_a_replay_to_a_time_that_ends_short_of_the_archive_fails_the_restore(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    snapshot_then_row_2(stack, binlog_mariadb, namespace, source_db, bucket, tmp_path)
    last = Gtid.parse(gtid_of_insert(binlog_mariadb, source_db, 3))
    time.sleep(1.2)  # the archive reads past the last transaction's second
    archive(stack, namespace)
    assert archive_gauge(stack, "stashq_binlog_archived_bytes", namespace) > 0
    assert archive_gauge(stack, "stashq_binlog_last_archived_event_time_seconds",
                         namespace) > time.time() - 60
    # The segment claims two more transactions than its bytes hold (a manifest and data
    # out of step): the replay runs out before the end the archive promised.
    client = stack.s3.client()
    key = next(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
               if "/binlogs/nightly/segments/" in o["Key"])
    segment = BinlogSegment.from_json(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    promised = str(Gtid(last.domain, last.server, last.seq + 2))
    client.put_object(Bucket=bucket, Key=key, Body=segment.model_copy(
        update={"gtid_end": promised}).to_json())
    assert segment.last_time is not None
    point = segment.last_time.isoformat().replace("+00:00", "Z")

    result = stack.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                       f"{source_db}_e", "--to-time", point, "--wait", namespace=namespace,
                       timeout=300)
    assert result.returncode != 0, result.stdout
    said = result.stdout + result.stderr
    assert f"the replay ended at {last}, short of the archive's planned end {promised}" \
        in said, said
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{source_db}_e`")
