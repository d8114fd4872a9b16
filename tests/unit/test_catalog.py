"""The built-in catalog: the Tasks and Functions it ships stay the ones recorded in
``data/builtin_catalog.json`` (written from the catalog as it was when each Task still
spelled out its own steps), however the YAML beside ``workflows/catalog`` is arranged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workflows.catalog import builtin_resources

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
