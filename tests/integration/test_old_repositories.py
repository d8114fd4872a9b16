"""Repositories written by an earlier StashQ restore and check with this one.

``tests/data/repositories/`` holds one snapshot in each format StashQ wrote before the
Repository object (``make.py`` there wrote them, once): plain and encrypted, logical
and physical. Today's code must list, check (reading every byte) and restore each of
them into data equal to what was backed up; a change that stops reading a format users
already have fails here, not in their recovery.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from devstack.compare import describe
from devstack.resources import appbinding, secret
from devstack.servers import MariaDBServer, free_port
from devstack.stack import Stack, wait_restore

FIXTURES = Path(__file__).parent.parent / "data" / "repositories"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
RESTORE_WAIT_S = 120


def normalized(value: Any) -> Any:
    """``describe`` output as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def snapshot_id(repo: Path) -> str:
    [manifest] = (repo / "snapshots").glob("*.json")
    return manifest.stem


def setup(stack: Stack, namespace: str, tmp_path: Path, name: str) -> tuple[Path, str]:
    """A copy of fixture ``name`` as Repository ``old`` (the tests must not change it)."""
    repo = tmp_path / name
    shutil.copytree(FIXTURES / name, repo)
    password = {"RESTIC_PASSWORD": EXPECTED["password"]} if name.startswith("encrypted") \
        else {"AWS_ACCESS_KEY_ID": ""}  # a plain repository: no password in its Secret
    docs = [secret("db-auth", username="root", password=""),
            secret("old-auth", **password),
            appbinding("db", stack.mariadb, "db-auth"),
            f"""apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {{name: old}}
spec:
  backend: {{local: {{mountPath: "{repo}"}}, storageSecretName: old-auth}}
"""]
    path = tmp_path / "setup.yaml"
    path.write_text("---\n".join(docs))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    return repo, snapshot_id(repo)


@pytest.mark.parametrize("name", ["plain-logical", "encrypted-logical",
                                  "plain-physical", "encrypted-physical"])
def test_an_old_repository_lists_and_checks_every_byte(
        stack: Stack, namespace: str, tmp_path: Path, name: str) -> None:
    _, snapshot = setup(stack, namespace, tmp_path, name)
    listed = stack.cli("snapshots", "old", namespace=namespace, check=True).stdout
    assert snapshot in listed
    checked = stack.cli("check", "old", "--read-data", namespace=namespace)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 snapshot(s), 1 stream(s)" in checked.stdout and checked.stdout.endswith(": ok\n")


@pytest.mark.parametrize("name", ["plain-logical", "encrypted-logical"])
def test_an_old_logical_snapshot_restores_the_data_it_holds(
        stack: Stack, namespace: str, database: str, tmp_path: Path, name: str) -> None:
    _, snapshot = setup(stack, namespace, tmp_path, name)
    with stack.mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE `{database}`")  # the restore creates it
    stack.cli("restore", "--repository", "old", "--target", "db", "--snapshot", snapshot,
              "--database", database, "--wait", namespace=namespace, check=True)
    with stack.mariadb.connect() as conn:
        assert normalized(describe(conn, database)) == EXPECTED["describe"]


@pytest.mark.parametrize("name", ["plain-physical", "encrypted-physical"])
def test_an_old_physical_snapshot_restores_a_server_with_the_data(
        stack: Stack, namespace: str, tmp_path: Path, name: str) -> None:
    _, snapshot = setup(stack, namespace, tmp_path, name)
    server_dir = tmp_path / "restored"
    (tmp_path / "r.yaml").write_text(f"""apiVersion: stashq.io/v1alpha1
kind: RestoreSession
metadata: {{name: restore-old}}
spec:
  repository: {{name: old}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
    rules: [{{snapshots: ["{snapshot}"]}}]
  task:
    name: mariadb-physical-restore
    params: [{{name: dataDir, value: "{server_dir / 'data'}"}}]
""")
    stack.cli("apply", "-f", str(tmp_path / "r.yaml"), namespace=namespace, check=True)
    result = wait_restore(stack, namespace, "restore-old", RESTORE_WAIT_S)
    assert result["phase"] == "Succeeded", result.get("reason")
    (server_dir / "installed").touch()  # MariaDBServer: the data directory is ready as it is
    server = MariaDBServer(server_dir, free_port())
    try:
        server.start()
        with server.connect() as conn:
            assert normalized(describe(conn, EXPECTED["database"])) == EXPECTED["describe"]
    finally:
        server.stop()
