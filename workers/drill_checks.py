"""The queries a restore drill runs on a restored server: the user's assertions, and
``CHECK TABLE`` on every table where nothing recorded at backup time can be compared.

Shared by the logical drill (scratch databases on the scratch AppBinding) and the
physical one (a throw-away server on the worker). Every query runs watched: when the
drill's time is up, the watchdog ``KILL``s it from a second connection, and the failure
the blocked call then raises is reported as the timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from workers import database
from workers.engines import ConnectionInfo
from workers.watchdog import Watchdog
from workflows.drills import assertion_problem
from workflows.resources.drill import Assertion

if TYPE_CHECKING:
    import pymysql

log = logging.getLogger(__name__)

#: ``CHECK TABLE`` statuses of a sound table (the second: MyISAM/Aria, checked before).
SOUND_STATUSES = frozenset({"OK", "Table is already up to date"})


@dataclass(frozen=True)
class Server:
    """A server a drill queries, and how to name it in a failure."""

    connection: ConnectionInfo
    what: str


def run_sql(server: Server, statements: Sequence[str], dog: Watchdog | None = None) -> None:
    with database.connect(server.connection, what=server.what) as conn, \
            conn.cursor() as cursor, watched(dog, server, conn):
        for statement in statements:
            cursor.execute(statement)


@contextmanager
def watched(dog: Watchdog | None, server: Server, conn: pymysql.Connection) -> Iterator[None]:
    """The block's queries on ``conn`` killed (from a second connection) at the timeout."""
    if dog is None:
        yield
        return
    thread_id = conn.thread_id()
    with dog.watching(lambda: run_sql(server, [f"KILL {int(thread_id)}"])):
        yield


def run_assertions(server: Server, selected: str | None, assertions: Sequence[Assertion],
                   dog: Watchdog) -> list[str]:
    """The assertions' failures; each runs with database ``selected`` (None: none)."""
    import pymysql

    problems: list[str] = []
    if not assertions:
        return problems
    with database.connect(server.connection, what=server.what) as conn, \
            conn.cursor() as cursor, watched(dog, server, conn):
        if selected is not None:
            cursor.execute(f"USE {database.quote_identifier(selected)}")
        for assertion in assertions:
            try:
                cursor.execute(assertion.query)
                rows = cursor.fetchall()
            except pymysql.MySQLError as e:
                dog.check()  # killed at the timeout: that is the failure
                problems.append(f'assertion "{assertion.name or assertion.query[:60]}" '
                                f"failed: {e.args[-1] if e.args else e}")
                continue
            if (problem := assertion_problem(assertion, rows)) is not None:
                problems.append(problem)
    return problems


@dataclass
class TableCheck:
    """What ``check_tables`` found: tables checked, their rows, the broken ones."""

    tables: int = 0
    rows: int = 0
    failures: list[str] = field(default_factory=list)


def check_tables(server: Server, databases: Sequence[str], dog: Watchdog) -> TableCheck:
    """``CHECK TABLE`` and ``COUNT(*)`` on every base table of ``databases``; a table the
    server reports broken (or cannot read) is a failure naming it."""
    import pymysql

    found = TableCheck()
    with database.connect(server.connection, what=server.what) as conn, \
            conn.cursor() as cursor, watched(dog, server, conn):
        for table in base_tables(cursor, databases):
            found.tables += 1
            try:
                cursor.execute(f"CHECK TABLE {table}")
                problem = check_problem(cursor.fetchall())
                if problem is None:
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")
                    found.rows += int(cursor.fetchone()[0])
            except pymysql.MySQLError as e:
                dog.check()
                problem = str(e.args[-1] if e.args else e)
            if problem is not None:
                found.failures.append(f"table {_plain(table)}: {problem}")
    return found


def base_tables(cursor: pymysql.cursors.Cursor, databases: Sequence[str]) -> list[str]:
    """Every base table of ``databases``, quoted as ``db``.``table``, in name order."""
    if not databases:
        return []
    marks = ", ".join(["%s"] * len(databases))
    cursor.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                   f"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({marks}) "
                   "ORDER BY 1, 2", tuple(databases))
    return [f"{database.quote_identifier(db)}.{database.quote_identifier(name)}"
            for db, name in cursor.fetchall()]


def check_problem(rows: Sequence[Sequence[str]]) -> str | None:
    """Why ``CHECK TABLE``'s result rows (Table, Op, Msg_type, Msg_text) say the table
    is broken: its error lines, or a final status other than OK (None: sound)."""
    errors = [str(text) for _, _, kind, text in rows if str(kind).lower() == "error"]
    status = next((str(text) for _, _, kind, text in reversed(rows)
                   if str(kind).lower() == "status"), None)
    if errors:
        return "CHECK TABLE: " + "; ".join(errors)
    if status is not None and status not in SOUND_STATUSES:
        return f"CHECK TABLE: {status}"
    return None


def _plain(quoted: str) -> str:
    """`db`.`table` as db.table, as the logical drill names tables."""
    db, _, table = quoted.partition("`.`")
    return f"{db[1:]}.{table[:-1]}".replace("``", "`")
