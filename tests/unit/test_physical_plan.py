"""Physical Tasks as plans and chains: a restore fans out into one step per replica, run
in parallel before the status step; each replica writes a directory of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery.canvas import _chain, _chord

from workers.app import create_app
from workers.chains import build_chain
from workers.steps.physical_restore import MARKER, claim
from workflows.catalog import builtin_functions, builtin_tasks
from workflows.errors import InvalidResource, PrecheckFailed
from workflows.plan import resolve_task
from workflows.settings import Settings


def test_builtin_physical_tasks_resolve() -> None:
    tasks, functions = builtin_tasks(), builtin_functions()
    for name in ("mariadb-galera-backup", "perconaxtradb-cluster-backup",
                 "mariadb-physical-backup"):
        steps = resolve_task(tasks[name], functions).steps
        assert [s.step for s in steps][:2] == ["stashq.physical_precheck",
                                               "stashq.physical_backup"]
    galera = resolve_task(tasks["mariadb-galera-backup"], functions).steps[1].params
    assert galera["method"] == "galera-sst" and galera["sstPort"] == "0"
    restore = resolve_task(tasks["mariadb-galera-restore"], functions).steps[1]
    assert restore.replicas == 3


def test_a_cluster_restore_runs_one_step_per_replica_then_the_status_step() -> None:
    plan = resolve_task(builtin_tasks()["mariadb-galera-restore"], builtin_functions(),
                        {"replicas": "2", "dataDir": "/r/{replica}"})
    signature = build_chain(create_app(Settings()), plan, "RestoreSession/ns/r")
    assert isinstance(signature, _chain)
    precheck, chord = signature.tasks
    assert precheck.task == "stashq.physical_precheck"
    assert isinstance(chord, _chord)  # the body (status, metrics) runs after every replica
    assert [s.task for s in chord.body.tasks] == ["stashq.update_status", "stashq.push_metrics"]
    assert [(s.task, s.args[1]["replica"]) for s in chord.tasks] == [
        ("stashq.physical_restore", "0"), ("stashq.physical_restore", "1")]


def test_steps_without_replicas_param_are_not_touched() -> None:
    plan = resolve_task(builtin_tasks()["mariadb-restore-10.11"], builtin_functions())
    signature = build_chain(create_app(Settings()), plan, "RestoreSession/ns/r")
    assert all("replica" not in s.args[1] for s in signature.tasks)


@pytest.mark.parametrize("value", ["0", "-1", "three", "65"])
def test_bad_replica_counts_are_rejected_when_the_task_is_resolved(value: str) -> None:
    with pytest.raises(InvalidResource, match=f'param "replicas" = "{value}"'):
        resolve_task(builtin_tasks()["mariadb-galera-restore"], builtin_functions(),
                     {"replicas": value})


def test_a_directory_is_claimed_only_if_empty_or_ours(tmp_path: Path) -> None:
    assert claim(tmp_path / "new", "RestoreSession/ns/a") is None
    (tmp_path / "new" / "ibdata1").write_bytes(b"half")  # a redelivered step starts over
    assert claim(tmp_path / "new", "RestoreSession/ns/a") is None
    assert [p.name for p in (tmp_path / "new").iterdir()] == [MARKER]
    (tmp_path / "new" / MARKER).write_text(json.dumps(
        {"session": "RestoreSession/ns/a", "state": "done", "status": {"phase": "Succeeded"}}))
    assert claim(tmp_path / "new", "RestoreSession/ns/a") == {
        "session": "RestoreSession/ns/a", "state": "done", "status": {"phase": "Succeeded"}}
    with pytest.raises(PrecheckFailed, match="is not empty .1 entries.*never deletes"):
        claim(tmp_path / "new", "RestoreSession/ns/b")
