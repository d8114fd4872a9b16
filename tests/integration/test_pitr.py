"""Point-in-time recovery, the user's story on a server that writes a binary log: every
snapshot knows where it stands in the binlog; the binlog is archived while a writer
commits numbered transactions, across a rotation and a server restart; a restore to a
time or a GTID holds exactly the transactions at or before it."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pymysql
import pytest

from devstack.resources import appbinding, backup_configuration, s3_repository, secret
from devstack.servers import MariaDBServer
from devstack.stack import Deployment, Stack, created
from tests.integration.test_parallel_dump import backup, manifest, parallel_setup
from workers.state.redis import RedisStore
from workflows.binlogs import BinlogSegment
from workflows.gtids import Gtid
from workflows.resources import BackupConfiguration, BackupSession, Repository, RestoreSession


def server_coordinates(server: MariaDBServer) -> tuple[str, str, int]:
    with server.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos")
        (gtid,) = cursor.fetchone()
        cursor.execute("SHOW MASTER STATUS")
        file, pos = cursor.fetchone()[:2]
    return str(gtid), str(file), int(pos)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_logical_snapshot_records_the_binlog_coordinates_of_its_consistent_point(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path, parallel: int) -> None:
    path = parallel_setup(stack, tmp_path, bucket, source_db, parallel)
    path.write_text(path.read_text().replace(f"127.0.0.1:{stack.mariadb.port}",
                                             f"127.0.0.1:{binlog_mariadb.port}"))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    gtid, file, pos = server_coordinates(binlog_mariadb)  # nothing writes until the next call

    position = manifest(stack, bucket, backup(stack, namespace)).position

    assert position is not None
    assert (position.gtid, position.log_file, position.log_pos) == (gtid, file, pos)
    assert server_coordinates(binlog_mariadb) == (gtid, file, pos)


@dataclass
class Commit:
    number: int
    gtid: str
    at: int  #: UNIX_TIMESTAMP() inside the INSERT: the transaction's binlog time


@dataclass
class Writer:
    """Commits numbered transactions into ``db.t`` until paused or stopped."""

    server: MariaDBServer
    db: str
    interval_s: float = 0.02
    commits: list[Commit] = field(default_factory=list)
    _run: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> None:
        self._run.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def pause(self) -> None:
        self._idle.clear()
        self._run.clear()
        self._idle.wait(30)

    def resume(self) -> None:
        self._run.set()

    def stop(self) -> list[Commit]:
        self._stop.set()
        self._run.set()
        assert self._thread is not None
        self._thread.join(30)
        if self._error is not None:
            raise self._error
        return self.commits

    def _loop(self) -> None:
        try:
            self._write()
        except BaseException as e:
            self._error = e
            self._idle.set()

    def _write(self) -> None:
        conn: pymysql.connections.Connection | None = None
        number = 100
        while not self._stop.is_set():
            if not self._run.is_set():
                if conn is not None:
                    conn.close()
                    conn = None
                self._idle.set()
                self._run.wait()
                continue
            conn = conn or self.server.connect(self.db)
            number += 1
            with conn.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP())", (number,))
                cursor.execute("SELECT @@last_gtid, at FROM t WHERE id = %s", (number,))
                gtid, at = cursor.fetchone()
            self.commits.append(Commit(number, str(gtid), int(at)))
            time.sleep(self.interval_s)
        if conn is not None:
            conn.close()


def apply_pitr(runner: Stack | Deployment, namespace: str, tmp_path: Path,
               source: MariaDBServer, scratch: MariaDBServer, bucket: str, db: str, *,
               user: str = "root", password: str = "", spec: str = "") -> None:
    """Apply AppBinding "db" on the binlog server (as ``user``), "scratch" on another one,
    and BackupConfiguration "nightly" of ``db``, archiving its binlog (again: to change
    where "db" leads), with more of its ``spec`` (YAML lines) if given."""
    config = backup_configuration("nightly", "repo", "db", db)
    config += "  binlogArchive:\n    intervalSeconds: 5\n" + spec
    s3 = runner.s3
    docs = [secret("db-auth", username=user, password=password),
            secret("scratch-auth", username="root", password=""),
            secret("s3-auth", AWS_ACCESS_KEY_ID=s3.access_key,
                   AWS_SECRET_ACCESS_KEY=s3.secret_key),
            appbinding("db", source, "db-auth"), appbinding("scratch", scratch, "scratch-auth"),
            s3_repository("repo", s3, bucket, "s3-auth"), config]
    path = tmp_path / f"pitr-{source.port}.yaml"
    path.write_text("---\n".join(docs))
    runner.cli("apply", "-f", str(path), namespace=namespace, check=True)


def archive(stack: Stack | Deployment, namespace: str, *, ok: bool = True) -> str:
    """``stashq archive nightly``: its output (and error output, if it is to fail)."""
    result = stack.cli("archive", "nightly", namespace=namespace, timeout=120)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def restore_to(stack: Stack, namespace: str, into: str, *point: str) -> dict[str, object]:
    result = stack.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                       into, *point, "--wait", namespace=namespace, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr + stack.worker.log()[-4000:]
    store = RedisStore.from_url(stack.redis_url)
    return store.get(RestoreSession, created(result.stdout), namespace).status


def numbers(server: MariaDBServer, db: str) -> list[int]:
    with server.connect(db) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT id FROM t ORDER BY id")
        return [n for (n,) in cursor.fetchall()]


def test_restore_to_a_time_and_to_a_gtid_across_a_rotation_and_a_restart(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db)
    writer = Writer(binlog_mariadb, source_db)
    writer.start()
    time.sleep(1)
    backup(stack, namespace)                  # the snapshot, taken while the writer writes
    archive(stack, namespace)
    time.sleep(1.5)
    with binlog_mariadb.connect() as conn:
        conn.cursor().execute("FLUSH BINARY LOGS")  # a rotation
    rotated = len(writer.commits)
    time.sleep(1.5)
    archive(stack, namespace)
    writer.pause()
    restarted = len(writer.commits)
    binlog_mariadb.stop()                      # a restart: the active binlog ends with Stop
    binlog_mariadb.start()
    writer.resume()
    time.sleep(2.5)
    commits = writer.stop()
    report = archive(stack, namespace)
    assert "recoverable from" in report, report
    assert 0 < rotated < restarted < len(commits) - 5

    after_restart = commits[-5]
    status = restore_to(stack, namespace, f"{source_db}_g", "--to-gtid", after_restart.gtid)
    assert numbers(stack.mariadb, f"{source_db}_g") == [1] + [
        c.number for c in commits if c.number <= after_restart.number]
    assert status["pointInTime"]["throughGtid"] == after_restart.gtid  # type: ignore[index]

    # a second between the rotation and the restart, with later transactions after it
    middle = commits[(rotated + restarted) // 2].at
    assert any(c.at > middle for c in commits[:restarted])
    point = datetime.fromtimestamp(middle, UTC).isoformat().replace("+00:00", "Z")
    restore_to(stack, namespace, f"{source_db}_t", "--to-time", point)
    assert numbers(stack.mariadb, f"{source_db}_t") == [1] + [
        c.number for c in commits if c.at <= middle]

    store = RedisStore.from_url(stack.redis_url)
    archived = store.get(BackupConfiguration, "nightly", namespace).status["binlogArchive"]
    assert archived["phase"] == "Archiving" and not archived["gaps"]
    assert archived["position"]["gtid"] == commits[-1].gtid
    assert store.get(Repository, "repo", namespace).status["pointInTime"]["nightly"]["window"]
    files = {key.rpartition("-")[2] for key in data_keys(stack, bucket)}
    assert len(files) >= 3, files  # before the rotation, after it, after the restart
    for db in (f"{source_db}_g", f"{source_db}_t"):
        with stack.mariadb.connect() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")


def data_keys(stack: Stack, bucket: str) -> list[str]:
    """Keys of the archived segments' data."""
    listed = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in listed if "/binlogs/nightly/data/" in o["Key"]]


def test_a_point_outside_the_window_is_refused_naming_the_window(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db)
    backup(stack, namespace)
    with binlog_mariadb.connect(source_db) as conn:
        conn.cursor().execute("INSERT INTO t VALUES (2, UNIX_TIMESTAMP())")
    archive(stack, namespace)
    result = stack.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                       f"{source_db}_x", "--to-time", "2099-01-01T00:00:00Z",
                       namespace=namespace)
    assert result.returncode != 0
    assert re.search(r"time 2099-01-01T00:00:00Z is outside the recoverable window: "
                     r"recoverable: from \S+Z to \S+Z", result.stderr), result.stderr
    no_zone = stack.cli("restore", "--repository", "repo", "--target", "scratch",
                        "--to-time", "2026-12-06T10:00:00", namespace=namespace)
    assert no_zone.returncode != 0 and "has no time zone" in no_zone.stderr, no_zone.stderr


def test_restore_to_a_binlog_position(stack: Stack, binlog_mariadb: MariaDBServer,
                                      namespace: str, source_db: str, bucket: str,
                                      tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db)
    backup(stack, namespace)
    ends = []
    for n in (2, 3, 4):
        with binlog_mariadb.connect(source_db) as conn:
            conn.cursor().execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP())", (n,))
        _, file, pos = server_coordinates(binlog_mariadb)  # the end of transaction n
        ends.append(f"{file}:{pos}")
    archive(stack, namespace)

    status = restore_to(stack, namespace, f"{source_db}_p", "--to-position", ends[1])
    assert numbers(stack.mariadb, f"{source_db}_p") == [1, 2, 3]
    assert status["pointInTime"]["point"] == f"position {ends[1]}"  # type: ignore[index]

    not_an_end = ends[1].rpartition(":")[0] + ":" + str(int(ends[1].rpartition(":")[2]) - 1)
    refused = stack.cli("restore", "--repository", "repo", "--target", "scratch", "--database",
                        f"{source_db}_q", "--to-position", not_an_end, "--wait",
                        namespace=namespace, timeout=300)
    assert refused.returncode != 0
    assert "a position must be the end of a transaction" in refused.stdout + refused.stderr
    malformed = stack.cli("restore", "--repository", "repo", "--target", "scratch",
                          "--to-position", "mysql-bin.000002", namespace=namespace)
    assert malformed.returncode != 0 and "is not FILE:POS" in malformed.stderr, malformed.stderr
    with stack.mariadb.connect() as conn:
        for db in (f"{source_db}_p", f"{source_db}_q"):
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")


def test_retention_keeps_exactly_the_segments_the_kept_snapshots_need(
        stack: Stack, binlog_mariadb: MariaDBServer, namespace: str, source_db: str,
        bucket: str, tmp_path: Path) -> None:
    apply_pitr(stack, namespace, tmp_path, binlog_mariadb, stack.mariadb, bucket, source_db,
               spec="  retentionPolicy: {name: keep-2, keepLast: 2, prune: true}\n")
    oldest = backup(stack, namespace)
    insert(binlog_mariadb, source_db, 2)
    archive(stack, namespace)                            # segment 1: S1 → S2, only S1's
    kept = backup(stack, namespace)
    middle = insert(binlog_mariadb, source_db, 3)
    last = insert(binlog_mariadb, source_db, 4)
    archive(stack, namespace)                            # segment 2: after S2
    assert segment_numbers(stack, bucket) == [1, 2]

    newest = backup(stack, namespace)                    # keeps S2 and S3: forgets S1
    session = RedisStore.from_url(stack.redis_url).get(BackupSession, newest, namespace)
    assert session.status["retention"]["forgotten"] == [oldest], session.status
    assert session.status["retention"]["forgottenBinlogSegments"] == 1, session.status
    assert segment_numbers(stack, bucket) == [2]         # manifest and data of 1: gone
    assert [k.rpartition("/")[2].split("-")[0] for k in data_keys(stack, bucket)] \
        == ["0000000002"]
    assert kept != oldest

    before_kept = Gtid.parse(middle)  # row 1's transaction: only S1 reached it
    before_kept = Gtid(before_kept.domain, before_kept.server, before_kept.seq - 2)
    too_old = stack.cli("restore", "--repository", "repo", "--target", "scratch",
                        "--database", f"{source_db}_o", "--to-gtid", str(before_kept),
                        namespace=namespace)
    assert too_old.returncode != 0 and "outside the recoverable window" in too_old.stderr
    replayed = restore_to(stack, namespace, f"{source_db}_r", "--to-gtid", middle)
    assert numbers(stack.mariadb, f"{source_db}_r") == [1, 2, 3]  # S2, then segment 2
    assert replayed["pointInTime"]["transactions"] == 1, replayed  # type: ignore[index]
    exact = restore_to(stack, namespace, f"{source_db}_s", "--to-gtid", last)
    assert numbers(stack.mariadb, f"{source_db}_s") == [1, 2, 3, 4]  # S3 holds the point
    assert exact["pointInTime"]["transactions"] == 0, exact  # type: ignore[index]
    with stack.mariadb.connect() as conn:
        for db in (f"{source_db}_r", f"{source_db}_s"):
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")


def insert(server: MariaDBServer, db: str, number: int) -> str:
    """Commit ``number`` into ``db.t``; its GTID."""
    with server.connect(db) as conn, conn.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP())", (number,))
        cursor.execute("SELECT @@last_gtid")
        return str(cursor.fetchone()[0])


def segment_numbers(stack: Stack, bucket: str) -> list[int]:
    """The archived segments of "nightly", by their manifests."""
    return [s.seq for s in segments(stack, bucket)]


def segments(stack: Stack, bucket: str) -> list[BinlogSegment]:
    """The archived segments of "nightly" (an unencrypted repository), in order."""
    client = stack.s3.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted((BinlogSegment.from_json(client.get_object(Bucket=bucket, Key=o["Key"])
                                           ["Body"].read())
                   for o in listed if "/binlogs/nightly/segments/" in o["Key"]),
                  key=lambda s: s.seq)
