"""The built-in catalog: the Tasks and Functions it ships stay the ones recorded in
``data/builtin_catalog.json`` (written from the catalog as it was when each Task still
spelled out its own steps), however the YAML beside ``workflows/catalog`` is arranged."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from workflows.catalog import STEP_LISTS, builtin_resources, builtin_tasks, task_documents
from workflows.errors import InvalidResource
from workflows.manifests import load_text
from workflows.parsing import parse_all
from workflows.resources import Task

EXPECTED = Path(__file__).with_name("data") / "builtin_catalog.json"


def dumped() -> list[dict[str, Any]]:
    out = [r.model_dump(mode="json", by_alias=True, exclude_none=True)
           for r in builtin_resources()]
    return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))


def test_the_catalog_holds_the_recorded_tasks_and_functions() -> None:
    expected = json.loads(EXPECTED.read_text())
    actual = dumped()
    assert [(o["kind"], o["metadata"]["name"]) for o in actual] == \
        [(o["kind"], o["metadata"]["name"]) for o in expected]
    assert actual == expected
    assert sum(o["kind"] == "Task" for o in actual) == 24


def test_each_step_list_is_written_once() -> None:
    step_lists = load_text((files("workflows.catalog") / STEP_LISTS).read_text(), STEP_LISTS)
    written = [tuple(json.dumps(s, sort_keys=True) for s in raw["steps"])
               for _, raw in step_lists]
    used = {tuple(json.dumps(s.model_dump(mode="json"), sort_keys=True)
                  for s in task.spec.steps) for task in builtin_tasks().values()}
    assert len(written) == len(set(written)) == len(used) == 6


@pytest.mark.parametrize(("text", "message"), [
    ("steps: [{name: precheck}]\n",
     "catalog: a step list is a mapping of `steps` and `tasks`"),
    ("steps: [{name: precheck}]\ntasks: {a-1: {engine: mariadb}}\nengine: mysql\n",
     "catalog: a step list is a mapping of `steps` and `tasks`"),
    ("steps: [{name: precheck}]\ntasks: {a-1: {steps: []}}\n",
     'catalog: Task "a-1": expected the rest of its spec (a mapping without steps)'),
    ("steps: [{name: precheck}]\ntasks: {a-1: mariadb}\n",
     'catalog: Task "a-1": expected the rest of its spec'),
    ("steps: []\ntasks: {a-1: {engine: mariadb}}\n",
     'catalog: Task "a-1": spec.steps: Tuple should have at least 1 item'),
])
def test_a_malformed_step_list_is_named(text: str, message: str) -> None:
    with pytest.raises(InvalidResource) as raised:
        parse_all(task_documents(load_text(text, "catalog")))
    assert str(raised.value).startswith(message), raised.value


def test_the_fields_beside_a_name_and_the_shared_steps_make_its_task() -> None:
    text = "steps: [{name: precheck}, {name: push-metrics}]\n" \
           "tasks: {a-1: {engine: mysql, serverVersions: '>=8'}, a-2: {}}\n"
    one, two = parse_all(task_documents(load_text(text, "catalog")))
    assert isinstance(one, Task) and isinstance(two, Task)
    assert (one.name, one.spec.engine, one.spec.server_versions) == ("a-1", "mysql", ">=8")
    assert (two.name, two.spec.engine, two.spec.server_versions) == ("a-2", None, None)
    assert one.spec.steps == two.spec.steps
    assert [s.name for s in one.spec.steps] == ["precheck", "push-metrics"]
