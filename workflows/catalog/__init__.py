"""Built-in Tasks and Functions, shipped as YAML beside this module.

One file per engine family; users may apply their own Tasks and Functions, which
take precedence over built-ins of the same name.
"""

from __future__ import annotations

import functools
from importlib.resources import files

from workflows.manifests import load_text
from workflows.parsing import parse_all
from workflows.resources import Engine, Function, Resource, Task

#: The Task a BackupConfiguration / RestoreSession uses when it names none.
DEFAULT_TASKS: dict[tuple[Engine, str], str] = {
    (Engine.MARIADB, "backup"): "mariadb-backup-10.11",
    (Engine.MARIADB, "restore"): "mariadb-restore-10.11",
    (Engine.MYSQL, "backup"): "mysql-backup-8.0",
    (Engine.MYSQL, "restore"): "mysql-restore-8.0",
    (Engine.PERCONA_XTRADB, "backup"): "perconaxtradb-backup-8.0",
    (Engine.PERCONA_XTRADB, "restore"): "perconaxtradb-restore-8.0",
}


@functools.cache
def builtin_resources() -> tuple[Resource, ...]:
    """Every built-in Task and Function (parsed once per process: models are frozen)."""
    out: list[Resource] = []
    for entry in sorted(files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out += parse_all(load_text(entry.read_text(encoding="utf-8"), f"catalog/{entry.name}"))
    return tuple(out)


def builtin_tasks() -> dict[str, Task]:
    return {r.name: r for r in builtin_resources() if isinstance(r, Task)}


def builtin_functions() -> dict[str, Function]:
    return {r.name: r for r in builtin_resources() if isinstance(r, Function)}
