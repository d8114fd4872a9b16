"""Typed step params: the strings Stash-style Tasks carry, parsed into what each step
takes, with errors that name the param (tables of cases)."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.catalog import builtin_functions, builtin_tasks
from workflows.errors import InvalidResource
from workflows.params import (
    MAX_PARALLEL,
    DumpParams,
    PhysicalBackupParams,
    PhysicalRestoreParams,
    RawParams,
    RestoreParams,
    parse_params,
)
from workflows.plan import resolve_task

DUMP = "stashq.dump_upload"


@pytest.mark.parametrize(("raw", "expected"), [
    ({}, DumpParams()),
    ({"databases": "", "args": "", "zstdLevel": "", "parallel": "1"}, DumpParams(parallel=1)),
    ({"databases": " shop, crm ,", "args": "--skip-dump-date  --no-data"},
     DumpParams(databases=("shop", "crm"), args=("--skip-dump-date", "--no-data"))),
    ({"zstdLevel": "19", "parallel": str(MAX_PARALLEL)},
     DumpParams(zstd_level=19, parallel=MAX_PARALLEL)),
])
def test_dump_params(raw: dict[str, str], expected: DumpParams) -> None:
    assert parse_params(DUMP, raw) == expected


@pytest.mark.parametrize(("step", "raw", "message"), [
    (DUMP, {"zstdLevel": "0"}, 'param "zstdLevel" = "0": Input should be greater than or '
                               "equal to 1"),
    (DUMP, {"parallel": "17"}, 'param "parallel" = "17": Input should be less than or equal'),
    (DUMP, {"parallel": "1.5"}, 'param "parallel" = "1.5": Input should be a valid integer'),
    (DUMP, {"paralel": "2"}, 'param "paralel" = "2": is not a param of stashq.dump_upload '
                             "(known: args, databases, parallel, zstdLevel)"),
    ("stashq.restore_stream", {"parallel": "-1"}, 'param "parallel" = "-1"'),
    ("stashq.retention", {"lockWaitSeconds": "soon"}, 'param "lockWaitSeconds" = "soon"'),
    ("stashq.retention", {"lockWaitSeconds": "0"}, "greater than 0"),
    ("stashq.physical_backup", {"method": "rsync"}, 'param "method" = "rsync": Input should '
                                                    "be 'galera-sst' or 'mariabackup'"),
    ("stashq.physical_backup", {"method": "galera-sst", "sstPort": "70000"},
     'param "sstPort" = "70000"'),
    ("stashq.physical_backup", {"method": "galera-sst", "sstPeers": "any"},
     'param "sstPeers" = "any"'),
    ("stashq.physical_restore", {"dataDir": "/x/{host}"}, "unknown placeholder {host}"),
    ("stashq.physical_restore", {"dataDir": "restore/{replica}"}, "not an absolute path"),
    ("stashq.physical_restore", {"dataDir": "/x/data", "replicas": "3"}, "has no {replica}"),
    ("stashq.physical_restore", {"dataDir": "/x/data", "replica": "1"}, "has no {replica}"),
    ("stashq.physical_restore", {"dataDir": "/x/{replica}", "replicas": "65"},
     'param "replicas" = "65"'),
    ("stashq.precheck", {"anything": "x"}, "is not a param of stashq.precheck"),
])
def test_bad_params_name_the_param_and_why(step: str, raw: dict[str, str],
                                           message: str) -> None:
    with pytest.raises(InvalidResource, match="spec.task.params") as e:
        parse_params(step, raw)
    assert message in str(e.value)


def test_a_physical_restore_fills_its_directory_per_replica() -> None:
    params = parse_params("stashq.physical_restore",
                          {"dataDir": "/var/lib/stashq/{namespace}/{target}/{replica}",
                           "replicas": "3", "replica": "2"})
    assert isinstance(params, PhysicalRestoreParams)
    assert params.directory(target="px", session="s", namespace="ns") == \
        "/var/lib/stashq/ns/px/2"


def test_a_step_no_model_describes_gets_its_strings() -> None:
    params = parse_params("stashq.my_own_step", {"flavour": "vanilla"})
    assert isinstance(params, RawParams) and params.get("flavour") == "vanilla"


def test_restore_and_galera_defaults() -> None:
    assert parse_params("stashq.restore_stream", {"database": " ", "parallel": ""}) == \
        RestoreParams()
    galera: Any = parse_params("stashq.physical_backup", {"method": "galera-sst",
                                                          "sstPort": "", "sstPeers": "*"})
    assert isinstance(galera, PhysicalBackupParams)
    assert (galera.sst_port, galera.sst_peers, galera.join_timeout_seconds) == (0, "*", None)


@pytest.mark.parametrize("name", sorted(builtin_tasks()))
def test_every_built_in_task_resolves_with_its_defaults(name: str) -> None:
    plan = resolve_task(builtin_tasks()[name], builtin_functions())
    for step in plan.steps:
        parse_params(step.step, step.params)  # raises on a default the model refuses


def test_a_bad_override_fails_when_the_task_is_resolved() -> None:
    task = builtin_tasks()["mariadb-backup-10.11"]
    with pytest.raises(InvalidResource) as e:
        resolve_task(task, builtin_functions(), {"zstdLevel": "fast"})
    assert str(e.value) == ('spec.task.params: Task "mariadb-backup-10.11" step '
                            '"logical-backup": param "zstdLevel" = "fast": Input should be a '
                            "valid integer, unable to parse string as an integer")
