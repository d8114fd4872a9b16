"""Point-in-time recovery, the user's story on a server that writes a binary log: every
snapshot knows where it stands in the binlog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_parallel_dump import backup, manifest, parallel_setup
from tests.servers import MariaDBServer


@pytest.fixture
def source_db(binlog_mariadb: MariaDBServer) -> Iterator[str]:
    """A database of this test's own on the binlog server, with a table ``t``."""
    name = f"pitr_{uuid.uuid4().hex[:12]}"
    with binlog_mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"CREATE TABLE `{name}`.t (id INT PRIMARY KEY, at DATETIME NOT NULL)")
        cursor.execute(f"INSERT INTO `{name}`.t VALUES (1, NOW())")
    yield name
    with binlog_mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


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
