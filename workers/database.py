"""Talking SQL to the target server: reachability, flavor and version, databases.

pymysql is used for the few queries pre-check and the dump step need; the bulk data
always goes through the engine's own clients.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql

from workers.engines import ConnectionInfo, ServerInfo
from workflows.errors import PrecheckFailed
from workflows.resources import Engine

#: Databases that belong to the server, never to the user.
SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
#: Seconds between connection attempts while waiting for the server (Stash: 5 s).
RETRY_INTERVAL_S = 2.0
ACCESS_DENIED = 1045
UNKNOWN_DATABASE = 1049


@contextmanager
def connect(conn: ConnectionInfo, *, what: str, wait_s: float = 0) -> Iterator[pymysql.Connection]:
    """Connect, retrying unreachable servers for ``wait_s``; ``what`` names the binding."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            # bytes: pymysql would encode a str password as latin-1, the clients use UTF-8
            connection = pymysql.connect(host=conn.host, port=conn.port, user=conn.user,
                                         password=conn.password.encode(), connect_timeout=10,
                                         charset="utf8mb4")
            break
        except pymysql.err.OperationalError as e:
            code = e.args[0] if e.args else 0
            if code == ACCESS_DENIED:
                raise PrecheckFailed(f"{what}: access denied for user \"{conn.user}\" at "
                                     f"{conn.host}:{conn.port} (check the password in its "
                                     "Secret)") from None
            if time.monotonic() >= deadline:
                raise PrecheckFailed(f"{what}: database at {conn.host}:{conn.port} is not "
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
