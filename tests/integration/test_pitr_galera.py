"""Point-in-time recovery of a Galera cluster: the binlog is archived from one node;
when that node goes away and the AppBinding leads to another, archiving goes on there
by GTID (its file names and positions are its own) without a gap or a duplicated
transaction, and a restore to a point after the failover holds every transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers.galera import GaleraCluster, GaleraNode
from devstack.stack import Stack
from tests.integration.test_galera import running
from tests.integration.test_parallel_dump import backup
from tests.integration.test_pitr import apply_pitr, archive, numbers, restore_to, segments
from workers.state.redis import RedisStore
from workflows.binlogs import BinlogSegment
from workflows.gtids import Gtid
from workflows.resources import BackupConfiguration


@pytest.fixture(scope="module")
def galera_binlog(servers_dir: Path) -> Iterator[GaleraCluster]:
    """A 3-node cluster whose nodes write binlogs (log_slave_updates, wsrep_gtid_mode)."""
    yield from running(GaleraCluster(servers_dir / "galera-binlog", binlog=True))


def insert(node: GaleraNode, db: str, numbers: range) -> str:
    """Commit each number through ``node``; the last GTID."""
    with node.connect(db) as conn, conn.cursor() as cursor:
        for n in numbers:
            cursor.execute("INSERT INTO t VALUES (%s, UNIX_TIMESTAMP())", (n,))
        cursor.execute("SELECT @@last_gtid")
        return str(cursor.fetchone()[0])


def archived_sequence(archive: list[BinlogSegment]) -> list[int]:
    """The GTID sequence numbers the segments hold, in archive order (one domain)."""
    numbers: list[int] = []
    for segment in archive:
        if segment.first_gtid and segment.last_gtid:
            first, last = Gtid.parse(segment.first_gtid), Gtid.parse(segment.last_gtid)
            assert last.seq - first.seq + 1 == segment.transactions, segment
            numbers += range(first.seq, last.seq + 1)
    return numbers


def test_archiving_fails_over_to_another_node_without_gap_or_duplicate(
        stack: Stack, galera_binlog: GaleraCluster, namespace: str, bucket: str,
        tmp_path: Path) -> None:
    first, second, _ = galera_binlog.nodes
    db = f"galera_{uuid.uuid4().hex[:10]}"
    with first.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{db}`")
        cursor.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, at BIGINT NOT NULL)")
    insert(first, db, range(1, 11))
    apply_pitr(stack, namespace, tmp_path, first, stack.mariadb, bucket, db)  # type: ignore[arg-type]
    backup(stack, namespace)
    insert(first, db, range(11, 21))
    archive(stack, namespace)

    first.stop()  # the archived node goes away; the AppBinding now leads to another
    try:
        insert(second, db, range(21, 31))
        apply_pitr(stack, namespace, tmp_path, second, stack.mariadb, bucket, db)  # type: ignore[arg-type]
        last = insert(second, db, range(31, 41))
        archive(stack, namespace)
        status = RedisStore.from_url(stack.redis_url).get(
            BackupConfiguration, "nightly", namespace).status["binlogArchive"]
        assert not status["gaps"], status["gaps"]
        assert status["position"]["gtid"].split(",").count(last) == 1, status["position"]
        assert status["position"]["server"].endswith(f":{second.port}")
        archived = archived_sequence(segments(stack, bucket))
        assert archived == list(range(archived[0], archived[-1] + 1)), archived  # once each
        assert archived[-1] == Gtid.parse(last).seq
        servers = [s.server for s in segments(stack, bucket) if s.transactions]
        assert servers[0].endswith(f":{first.port}") and servers[-1].endswith(f":{second.port}")

        restored = restore_to(stack, namespace, f"{db}_r", "--to-gtid", last)
        assert numbers(stack.mariadb, f"{db}_r") == list(range(1, 41))
        assert restored["pointInTime"]["transactions"] == 30  # type: ignore[index]
    finally:
        first.start(bootstrap=False)
        with stack.mariadb.connect() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{db}_r`")
