"""The window in which a parallel dump's clients take one snapshot: commits wait while it
is open, and it is left only once the server shows every client's transaction."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers import MariaDBServer
from workers.engines import ConnectionInfo
from workers.engines.base import defaults_file
from workers.process import ClientProcess
from workers.shared_snapshot import client_ports, commits_blocked
from workflows.errors import DumpFailed


@pytest.fixture
def info(mariadb_server: MariaDBServer) -> ConnectionInfo:
    return ConnectionInfo(mariadb_server.host, mariadb_server.port, mariadb_server.user,
                          mariadb_server.password)


@pytest.fixture
def cnf(info: ConnectionInfo) -> Iterator[Path]:
    with defaults_file(info) as path:
        yield path


def sql_client(cnf: Path, sql: str) -> ClientProcess:
    return ClientProcess(["mariadb", f"--defaults-file={cnf}", "-e", sql])


def test_clients_are_confirmed_once_their_transactions_exist_while_commits_wait(
        info: ConnectionInfo, cnf: Path, mariadb_server: MariaDBServer, database: str) -> None:
    with mariadb_server.connect(database) as conn:
        conn.cursor().execute("CREATE TABLE t (id INT PRIMARY KEY)")
    committed_at: list[float] = []

    def write() -> None:
        with mariadb_server.connect(database) as conn:
            conn.cursor().execute("INSERT INTO t VALUES (1)")  # autocommit: waits for the window
        committed_at.append(time.monotonic())

    clients = [sql_client(cnf, "START TRANSACTION WITH CONSISTENT SNAPSHOT; DO SLEEP(3)")
               for _ in range(3)]
    try:
        with commits_blocked(info, [database], what="test") as window:
            writer = threading.Thread(target=write)
            writer.start()
            window.confirm(clients)
            assert all(client_ports(c.pid) for c in clients)
            assert window.objects() == {(database, "t")}
            time.sleep(0.3)
            assert committed_at == []  # the insert waits for the block to be lifted
            lifted_at = time.monotonic()
        writer.join(timeout=10)
        assert committed_at and committed_at[0] >= lifted_at
    finally:
        for client in clients:
            client.stop()


def test_clients_are_seen_although_innodb_trx_was_just_read(
        info: ConnectionInfo, cnf: Path, mariadb_server: MariaDBServer) -> None:
    """InnoDB refreshes INNODB_TRX only after 0.1 s without a reader: a monitor's read
    just before the clients start must not hide them (nor may our own polling)."""
    with commits_blocked(info, ["mysql"], what="test") as window, \
            mariadb_server.connect() as monitor:
        monitor.cursor().execute("SELECT * FROM information_schema.INNODB_TRX")
        clients = [sql_client(cnf, "START TRANSACTION WITH CONSISTENT SNAPSHOT; DO SLEEP(3)")
                   for _ in range(2)]
        try:
            started = time.monotonic()
            window.confirm(clients, timeout_s=3)
            assert time.monotonic() - started < 1
        finally:
            for client in clients:
                client.stop()


def test_a_client_without_a_transaction_is_not_confirmed(info: ConnectionInfo,
                                                         cnf: Path) -> None:
    client = sql_client(cnf, "DO SLEEP(5)")
    try:
        with commits_blocked(info, ["mysql"], what='AppBinding "db"') as window, \
                pytest.raises(DumpFailed, match="no open transaction for mariadb"):
            window.confirm([client], timeout_s=0.5)
    finally:
        client.stop()


def test_a_client_that_failed_in_the_window_fails_the_confirmation(info: ConnectionInfo,
                                                                   cnf: Path) -> None:
    client = sql_client(cnf, "SELECT * FROM no_such_database.t")
    with commits_blocked(info, ["mysql"], what="test") as window, \
            pytest.raises(DumpFailed, match="doesn't exist"):
        window.confirm([client], timeout_s=5)
