"""A ``sql`` hook: statements on the target, as its AppBinding's user, within a timeout.

The timeout holds for all the statements together. A statement the server is still
running when it passes is killed from a second connection (``KILL``), so a hook that
hangs (a ``FLUSH TABLES WITH READ LOCK`` waiting behind a long query) neither keeps the
session waiting nor leaves its statement running on the server.
"""

from __future__ import annotations

import logging
import threading

from workers import database
from workers.engines import ConnectionInfo
from workflows.errors import HookFailed
from workflows.resources.hooks import SQLAction

log = logging.getLogger(__name__)

#: Result rows of a statement kept for the output.
OUTPUT_ROWS = 20


def run_sql(info: ConnectionInfo, action: SQLAction, timeout_s: float, *, what: str) -> str:
    """Run the statements; their results as text. ``HookFailed`` names the statement."""
    import pymysql

    lines: list[str] = []
    with database.connect(info, what=what) as conn:
        fired = threading.Event()
        killer = threading.Timer(timeout_s, _kill, (info, conn.thread_id(), what, fired))
        killer.start()
        try:
            with conn.cursor() as cursor:
                if action.database:
                    cursor.execute(f"USE {database.quote_identifier(action.database)}")
                for index, statement in enumerate(action.statements):
                    try:
                        cursor.execute(statement)
                    except pymysql.MySQLError as e:
                        if fired.is_set():
                            raise HookFailed(f"timed out after {timeout_s:g} s in statement "
                                             f"{index + 1}; the statement was killed") from None
                        raise HookFailed(f"statement {index + 1} failed: "
                                         f"{e.args[-1] if e.args else e}") from None
                    lines += [" ".join(str(v) for v in row)
                              for row in (cursor.fetchmany(OUTPUT_ROWS) or ())]
            conn.commit()
        finally:
            killer.cancel()
    return "\n".join(lines)


def _kill(info: ConnectionInfo, thread_id: int, what: str, fired: threading.Event) -> None:
    """Kill the hook's connection (its running statement with it); ``fired`` first, so
    that the error the statement gets is known for the timeout's."""
    fired.set()
    try:
        with database.connect(info, what=what) as conn, conn.cursor() as cursor:
            cursor.execute(f"KILL {int(thread_id)}")
    except Exception as e:  # the statement may have ended meanwhile
        log.warning("could not kill the hook's statement (connection %d): %s", thread_id, e)
