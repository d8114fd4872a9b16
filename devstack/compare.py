"""Prove two databases equal: same tables with equal CHECKSUM TABLE, same views,
triggers, routines and events (definitions compared with the schema name removed)."""

from __future__ import annotations

from typing import Any


def describe(connection: Any, database: str) -> dict[str, Any]:
    """Everything that must survive a backup, keyed so two databases compare with ==."""
    with connection.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_TYPE='BASE TABLE' ORDER BY 1", (database,))
        tables = [t for (t,) in cur.fetchall()]
        checksums = {}
        for table in tables:
            name = f"{quote(database)}.{quote(table)}"
            cur.execute(f"CHECKSUM TABLE {name} EXTENDED")
            checksums[table] = cur.fetchone()[1]
            cur.execute(f"SELECT COUNT(*) FROM {name}")
            checksums[table] = (checksums[table], cur.fetchone()[0])
        result: dict[str, Any] = {"tables": checksums}
        for key, sql in QUERIES.items():
            cur.execute(sql, (database,))
            rows = cur.fetchall()
            result[key] = sorted(tuple(_strip(v, database) for v in row) for row in rows)
    return result


QUERIES = {
    "views": "SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
             "WHERE TABLE_SCHEMA=%s",
    "triggers": "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_TIMING, "
                "ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA=%s",
    "routines": "SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION, DTD_IDENTIFIER "
                "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA=%s",
    "events": "SELECT EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, STATUS "
              "FROM information_schema.EVENTS WHERE EVENT_SCHEMA=%s",
}


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _strip(value: Any, database: str) -> Any:
    return value.replace(f"{quote(database)}.", "") if isinstance(value, str) else value


def differences(connection: Any, source: str, restored: str) -> list[str]:
    """Human-readable differences; empty when the databases are equal."""
    a, b = describe(connection, source), describe(connection, restored)
    out = []
    for key in a:
        if a[key] != b[key]:
            out.append(f"{key} differ: {source}={a[key]!r} {restored}={b[key]!r}")
    if not a["tables"]:
        out.append(f"{source} has no tables: nothing was compared")
    return out
