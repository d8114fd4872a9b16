"""Task → plan resolution: built-ins, user-defined step lists, parameter precedence."""

from __future__ import annotations

import pytest

from workflows.catalog import DEFAULT_TASKS, builtin_functions, builtin_tasks
from workflows.errors import InvalidResource, NotFound
from workflows.parsing import parse_resource
from workflows.plan import resolve_task
from workflows.resources import Task


def task(steps: list[dict[str, object]]) -> Task:
    t = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "Task",
                        "metadata": {"name": "custom"}, "spec": {"steps": steps}})
    assert isinstance(t, Task)
    return t


def test_every_default_task_exists_and_resolves() -> None:
    tasks, functions = builtin_tasks(), builtin_functions()
    for name in DEFAULT_TASKS.values():
        plan = resolve_task(tasks[name], functions)
        assert plan.steps[0].step == "stashq.precheck"
        assert plan.steps[-1].step == "stashq.push_metrics"


def test_backup_chain_is_precheck_dump_retention_status_metrics() -> None:
    plan = resolve_task(builtin_tasks()["mysql-backup-8.0"], builtin_functions())
    assert [s.step for s in plan.steps] == ["stashq.precheck", "stashq.dump_upload",
                                           "stashq.retention", "stashq.update_status",
                                           "stashq.push_metrics"]


def test_a_user_task_with_its_own_steps_resolves() -> None:
    plan = resolve_task(task([{"name": "logical-backup",
                               "params": [{"name": "zstdLevel", "value": "9"}]},
                              {"name": "update-status"}]), builtin_functions(),
                        {"databases": "shop"})
    assert [s.step for s in plan.steps] == ["stashq.dump_upload", "stashq.update_status"]
    assert plan.steps[0].params["zstdLevel"] == "9"      # the Task's value beats the default
    assert plan.steps[0].params["databases"] == "shop"   # the configuration's beats both


def test_missing_function_and_unknown_param_are_named() -> None:
    with pytest.raises(NotFound, match=r'spec\.steps\[1\]: Function "nope" does not exist'):
        resolve_task(task([{"name": "precheck"}, {"name": "nope"}]), builtin_functions())
    with pytest.raises(InvalidResource, match='param "databse" is not used'):
        resolve_task(builtin_tasks()["mariadb-backup-10.11"], builtin_functions(),
                     {"databse": "x"})
