"""Talking SQL to the target server: reachability, flavor and version, databases.

pymysql is used for the few queries pre-check and the dump step need; the bulk data
always goes through the engine's own clients.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from workers.engines import ConnectionInfo, ServerInfo
from workflows.errors import DumpFailed, PrecheckFailed
from workflows.gtids import Coordinates
from workflows.parallel_plan import TableSize
from workflows.resources import Engine

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pymysql (and the cryptography it loads) only in processes that connect
    import pymysql

#: Databases that belong to the server, never to the user.
SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
#: Seconds between connection attempts while waiting for the server (Stash: 5 s).
RETRY_INTERVAL_S = 2.0
ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049


@contextmanager
def connect(conn: ConnectionInfo, *, what: str, wait_s: float = 0) -> Iterator[pymysql.Connection]:
    """Connect, retrying unreachable servers for ``wait_s``; ``what`` names the binding."""
    import pymysql

    deadline = time.monotonic() + wait_s
    while True:
        try:
            # bytes: pymysql would encode a str password as latin-1, the clients use UTF-8
            connection = pymysql.connect(host=conn.host, port=conn.port, user=conn.user,
                                         password=conn.password.encode(), connect_timeout=10,
                                         charset="utf8mb4", unix_socket=conn.socket)
            break
        except pymysql.err.OperationalError as e:
            code = e.args[0] if e.args else 0
            if code == ACCESS_DENIED:
                raise PrecheckFailed(f"{what}: access denied for user \"{conn.user}\" at "
                                     f"{conn.address} (check the password in its "
                                     "Secret)") from None
            if time.monotonic() >= deadline:
                raise PrecheckFailed(f"{what}: database at {conn.address} is not "
                                     f"reachable: {e.args[-1]}") from None
            time.sleep(RETRY_INTERVAL_S)
    try:
        yield connection
    finally:
        connection.close()


def server_info(connection: pymysql.Connection) -> ServerInfo:
    with connection.cursor() as cursor:
        cursor.execute("SELECT VERSION(), @@version_comment")
        version_string, comment = cursor.fetchone()
    text = f"{version_string} {comment}".lower()
    flavor = (Engine.MARIADB if "mariadb" in text else
              Engine.PERCONA_XTRADB if "percona" in text else Engine.MYSQL)
    match = re.match(r"\d+(\.\d+)*", version_string)
    return ServerInfo(flavor=flavor, version=match.group(0) if match else "0",
                      version_string=version_string)


def user_databases(connection: pymysql.Connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        return [name for (name,) in cursor.fetchall() if name.lower() not in SYSTEM_DATABASES]


def binlog_enabled(connection: pymysql.Connection) -> bool:
    """Whether the server writes a binary log (``@@log_bin``)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@log_bin")
        (value,) = cursor.fetchone()
    return str(value).upper() in ("1", "ON")


def binlog_coordinates(connection: pymysql.Connection, *, what: str) -> Coordinates | None:
    """The server's binlog coordinates now (None: no binlog). Consistent with a snapshot
    only while commits are blocked. ``SHOW MASTER STATUS`` needs BINLOG MONITOR (or
    REPLICATION CLIENT); without it the GTID state alone is recorded, with a warning."""
    import pymysql

    if not binlog_enabled(connection):
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@gtid_binlog_pos")
        (gtid,) = cursor.fetchone()
        try:
            cursor.execute("SHOW MASTER STATUS")
            row = cursor.fetchone()
        except pymysql.MySQLError as e:
            log.warning("%s: binlog file and position not recorded (SHOW MASTER STATUS needs "
                        "the BINLOG MONITOR privilege): %s", what, e.args[-1])
            row = None
    return Coordinates(gtid=str(gtid or "") or None, log_file=str(row[0]) if row else "",
                       log_pos=int(row[1]) if row else 0)


def table_counts(connection: pymysql.Connection, databases: Sequence[str]) -> dict[str, int]:
    """How many tables (and views) each of ``databases`` holds; a missing one is absent."""
    if not databases:
        return {}
    marks = ", ".join(["%s"] * len(databases))
    with connection.cursor() as cursor:
        cursor.execute("SELECT TABLE_SCHEMA, COUNT(*) FROM information_schema.TABLES "
                       f"WHERE TABLE_SCHEMA IN ({marks}) GROUP BY 1", tuple(databases))
        return {name: int(count) for name, count in cursor.fetchall()}


# --- a parallel dump's questions (workers/parallel_dump.py, workers/shared_snapshot.py) ---

#: Column types a primary key must have for a table to be dumped in key ranges.
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
#: The server refuses a statement for want of a privilege (RELOAD, for the commit block).
SPECIFIC_ACCESS_DENIED = 1227


def schema_objects(connection: pymysql.Connection,
                   databases: Sequence[str]) -> tuple[list[TableSize], list[tuple[str, str]]]:
    """The tables (with size and integer primary key) and the views (database, name)
    of ``databases``."""
    marks = ", ".join(["%s"] * len(databases))
    with connection.cursor() as cursor:
        cursor.execute("SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE "
                       "FROM information_schema.COLUMNS WHERE COLUMN_KEY = 'PRI' "
                       f"AND TABLE_SCHEMA IN ({marks})", tuple(databases))
        key_columns: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for db, table, column, data_type in cursor.fetchall():
            key_columns.setdefault((db, table), []).append((column, data_type.lower()))
        cursor.execute("SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, COALESCE(DATA_LENGTH, 0) "
                       f"FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({marks}) "
                       "ORDER BY 1, 2", tuple(databases))
        rows = cursor.fetchall()
    views = [(db, name) for db, name, kind, _ in rows if kind == "VIEW"]
    tables = []
    for db, name, kind, data_bytes in rows:
        if kind != "VIEW":
            key = key_columns.get((db, name), [])
            integer = len(key) == 1 and key[0][1] in INTEGER_TYPES
            tables.append(TableSize(db, name, int(data_bytes), key[0][0] if integer else None))
    return tables, views


def key_bounds(connection: pymysql.Connection, table: TableSize) -> tuple[int, int] | None:
    """MIN and MAX of the table's integer key (two index dives), or None if it is empty."""
    if table.key is None:
        return None
    column = quote_identifier(table.key)
    where = f"{quote_identifier(table.database)}.{quote_identifier(table.name)}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN({column}), MAX({column}) FROM {where}")
        low, high = cursor.fetchone()
    return None if low is None or high is None else (int(low), int(high))


def object_names(connection: pymysql.Connection,
                 databases: Sequence[str]) -> set[tuple[str, str]]:
    """(database, name) of every table and view in ``databases`` (names only: quick)."""
    marks = ", ".join(["%s"] * len(databases))
    with connection.cursor() as cursor:
        cursor.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                       f"WHERE TABLE_SCHEMA IN ({marks})", tuple(databases))
        return {(db, name) for db, name in cursor.fetchall()}


def block_commits(connection: pymysql.Connection, *, what: str, wait_s: int) -> str:
    """Block every commit on the server (reads go on); return the statement that lifts it.

    MariaDB ≥ 10.4 without Galera: ``BACKUP STAGE BLOCK_COMMIT``, which waits for no
    running query. Elsewhere ``FLUSH TABLES WITH READ LOCK``, which also pauses a Galera
    node's replication but waits for running queries: at most ``wait_s`` seconds.
    """
    import pymysql

    info = server_info(connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SET SESSION lock_wait_timeout = {int(wait_s)}")
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        galera = any(str(value).upper() == "ON" for _, value in cursor.fetchall())
        staged = (info.flavor is Engine.MARIADB and not galera
                  and tuple(int(p) for p in info.version.split(".")[:2]) >= (10, 4))
        statements = (["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"] if staged
                      else ["FLUSH TABLES WITH READ LOCK"])
        try:
            for statement in statements:
                cursor.execute(statement)
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args else 0
            if code == SPECIFIC_ACCESS_DENIED:
                raise PrecheckFailed(f"{what}: a parallel dump blocks commits for a moment "
                                     f"with {statements[-1]}, which needs the RELOAD "
                                     "privilege: grant it, or set parallel to 1") from None
            raise DumpFailed(f"{what}: {statements[-1]} failed: {e.args[-1]}") from e
    return "BACKUP STAGE END" if staged else "UNLOCK TABLES"


def unblock_commits(connection: pymysql.Connection, statement: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement)


def snapshot_ports(connection: pymysql.Connection, user: str) -> set[int]:
    """Client ports of ``user``'s connections that have an InnoDB transaction open."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT p.HOST FROM information_schema.PROCESSLIST p "
                       "JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
                       "WHERE p.USER = %s", (user,))
        hosts = [host for (host,) in cursor.fetchall()]
    return {int(port) for host in hosts if (port := str(host).rpartition(":")[2]).isdigit()}


def quote_identifier(identifier: str) -> str:
    """A name as SQL text: in backticks, its own backticks doubled."""
    return "`" + identifier.replace("`", "``") + "`"
