"""Built-in Tasks and Functions, shipped as YAML beside this module.

Functions are resources, one file per engine family (``functions.yaml``,
``physical.yaml``). Tasks are not written out one by one: 24 of them share 6 step
lists, so ``tasks.yaml`` holds each step list once with the Tasks that run it, and
``task_documents`` expands it here. Users may apply their own Tasks and Functions,
which take precedence over built-ins of the same name.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from importlib.resources import files

from workflows.errors import InvalidResource
from workflows.manifests import RawResource, load_text
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
#: The file of step lists; every other YAML file here holds resources.
STEP_LISTS = "tasks.yaml"
TASK_API_VERSION = "stashq.io/v1alpha1"


@functools.cache
def builtin_resources() -> tuple[Resource, ...]:
    """Every built-in Task and Function (parsed once per process: models are frozen)."""
    out: list[Resource] = []
    for entry in sorted(files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            documents = load_text(entry.read_text(encoding="utf-8"), f"catalog/{entry.name}")
            out += parse_all(task_documents(documents) if entry.name == STEP_LISTS
                             else documents)
    return tuple(out)


def task_documents(step_lists: Iterable[tuple[str, RawResource]],
                   ) -> Iterator[tuple[str, RawResource]]:
    """One raw Task per name under ``tasks`` of each step list: its spec is the fields
    given beside the name, and the list's ``steps``."""
    for source, step_list in step_lists:
        tasks = step_list.get("tasks")
        if set(step_list) != {"steps", "tasks"} or not isinstance(tasks, dict) or not tasks:
            raise InvalidResource("a step list is a mapping of `steps` and `tasks` (Task "
                                  "name: the rest of its spec)", source=source)
        for name, spec in tasks.items():
            if not isinstance(spec, dict) or "steps" in spec:
                raise InvalidResource("expected the rest of its spec (a mapping without "
                                      "steps)", source=source, kind="Task", name=str(name))
            yield source, {"apiVersion": TASK_API_VERSION, "kind": "Task",
                           "metadata": {"name": name},
                           "spec": {**spec, "steps": step_list["steps"]}}


def builtin_tasks() -> dict[str, Task]:
    return {r.name: r for r in builtin_resources() if isinstance(r, Task)}


def builtin_functions() -> dict[str, Function]:
    return {r.name: r for r in builtin_resources() if isinstance(r, Function)}
