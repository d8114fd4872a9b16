"""The MySQL-protocol family: MariaDB (mariadb-dump), MySQL and Percona (mysqldump).

Default dump options give a consistent, complete logical dump (Stash's default was
``--all-databases`` alone, leaving consistency to the user):
``--single-transaction`` (InnoDB snapshot, no global lock), ``--quick`` (row by row,
constant memory), routines, events, triggers, and ``--hex-blob`` so binary columns
survive any client character set.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from workers.engines.base import ServerInfo
from workflows.errors import PrecheckFailed
from workflows.resources import Engine

CONSISTENT_DUMP_OPTIONS = (
    "--single-transaction", "--quick", "--routines", "--events", "--triggers",
    "--hex-blob", "--default-character-set=utf8mb4", "--max-allowed-packet=1G",
)
#: mariadb-dump states the snapshot's binlog file, position and GTID state as comments
#: (``-- CHANGE MASTER TO ...`` in the head, ``-- SET GLOBAL gtid_slave_pos=...`` at the
#: end). With --single-transaction it reads them from the snapshot itself (MariaDB's
#: binlog_snapshot_file/position): no lock and no privilege beyond the dump's.
MARIADB_COORDINATES_OPTIONS = ("--master-data=2", "--gtid")
RESTORE_OPTIONS = ("--default-character-set=utf8mb4", "--max-allowed-packet=1G",
                   "--batch", "--silent")


def _which(candidates: Sequence[str], role: str, engine: Engine) -> str:
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise PrecheckFailed(f"{engine.value}: no {role} client installed "
                         f"(looked for {', '.join(candidates)} on PATH)")


class MySQLFamilyEngine:
    """Shared behaviour; subclasses name their clients and the flavors they accept."""

    engine: ClassVar[Engine]
    dump_clients: ClassVar[tuple[str, ...]]
    sql_clients: ClassVar[tuple[str, ...]]
    compatible: ClassVar[frozenset[Engine]]

    def dump_client(self) -> str:
        return _which(self.dump_clients, "dump", self.engine)

    def restore_client(self) -> str:
        return _which(self.sql_clients, "SQL", self.engine)

    def dump_args(self, defaults_file: Path, databases: Sequence[str],
                  extra: Sequence[str]) -> list[str]:
        argv = [self.dump_client(), f"--defaults-file={defaults_file}",
                *CONSISTENT_DUMP_OPTIONS, *extra]
        if len(databases) == 1:
            # One database: no CREATE DATABASE / USE, so it can be restored under a new name.
            return [*argv, "--", databases[0]]
        return [*argv, "--databases", "--", *databases]

    def restore_args(self, defaults_file: Path, database: str | None,
                     extra: Sequence[str]) -> list[str]:
        argv = [self.restore_client(), f"--defaults-file={defaults_file}",
                *RESTORE_OPTIONS, *extra]
        return [*argv, f"--database={database}"] if database else argv

    def accepts(self, server: ServerInfo) -> bool:
        return server.flavor in self.compatible

    def coordinates_options(self) -> tuple[str, ...]:
        return ()


class MariaDBEngine(MySQLFamilyEngine):
    engine = Engine.MARIADB
    dump_clients = ("mariadb-dump", "mysqldump")
    sql_clients = ("mariadb", "mysql")
    compatible = frozenset({Engine.MARIADB})

    def coordinates_options(self) -> tuple[str, ...]:
        return MARIADB_COORDINATES_OPTIONS


class MySQLEngine(MySQLFamilyEngine):
    engine = Engine.MYSQL
    dump_clients = ("mysqldump",)
    sql_clients = ("mysql",)
    compatible = frozenset({Engine.MYSQL, Engine.PERCONA_XTRADB})


class PerconaEngine(MySQLFamilyEngine):
    """Percona Server / XtraDB standalone: MySQL's clients, MySQL's protocol."""

    engine = Engine.PERCONA_XTRADB
    compatible = frozenset({Engine.PERCONA_XTRADB, Engine.MYSQL})
    dump_clients = ("mysqldump",)
    sql_clients = ("mysql",)
