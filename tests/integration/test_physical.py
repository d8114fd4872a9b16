"""A large standalone server's story: a physical backup (mariadb-backup beside the server,
streamed to S3), restored into the data directory of a new server, which starts on it
and holds the same data. A data directory that is not empty is never written into."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from devstack.compare import describe
from devstack.resources import appbinding, restore_session, s3_repository, secret
from devstack.sample import create_sample
from devstack.servers import MariaDBServer, free_port
from devstack.stack import Stack, created, wait_restore
from workers.state.redis import RedisStore
from workflows.resources import BackupSession

RESTORE_WAIT_S = 120


def physical_setup(path: Path, stack: Stack, bucket: str) -> Path:
    docs = [
        secret("db-auth", username="root", password=""),
        secret("s3-auth", AWS_ACCESS_KEY_ID=stack.s3.access_key,
               AWS_SECRET_ACCESS_KEY=stack.s3.secret_key),
        appbinding("db", stack.mariadb, "db-auth"),
        s3_repository("repo", stack.s3, bucket, "s3-auth"),
        """apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  repository: {name: repo}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}
  task: {name: mariadb-physical-backup}
""",
    ]
    path.write_text("---\n".join(docs))
    return path


def restore(stack: Stack, namespace: str, path: Path, name: str, data_dir: Path) -> dict[str, Any]:
    path.write_text(restore_session(name, task={
        "name": "mariadb-physical-restore",
        "params": [{"name": "dataDir", "value": str(data_dir)}]}))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    return wait_restore(stack, namespace, name, RESTORE_WAIT_S)


def test_physical_backup_restores_into_a_new_servers_data_directory(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=400)
    stack.cli("apply", "-f", str(physical_setup(tmp_path / "s.yaml", stack, bucket)),
              namespace=namespace, check=True)
    started = time.monotonic()
    name = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)
    backup_s = time.monotonic() - started
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    snapshot = status["snapshot"]
    assert status["phase"] == "Succeeded"
    assert snapshot["kind"] == "physical" and snapshot["method"] == "mariabackup"
    assert snapshot["position"]["lsn"] > 0
    assert 0 < snapshot["totalSize"] < snapshot["rawSize"]
    print(f"\nphysical backup: {snapshot['rawSize']} bytes streamed, {snapshot['totalSize']} "
          f"stored, session {backup_s:.1f} s")

    server_dir = tmp_path / "restored"
    result = restore(stack, namespace, tmp_path / "r.yaml", "restore-1", server_dir / "data")
    assert result["phase"] == "Succeeded", result.get("reason")
    assert result["replicas"]["0"]["dataDir"] == str(server_dir / "data")
    assert "position" not in result["replicas"]["0"]  # no Galera state for a standalone server

    (server_dir / "installed").touch()  # MariaDBServer: the data directory is ready as it is
    server = MariaDBServer(server_dir, free_port())
    try:
        server.start()
        with stack.mariadb.connect() as src, server.connect() as copy:
            assert describe(copy, database) == describe(src, database)
    finally:
        server.stop()

    again = restore(stack, namespace, tmp_path / "r2.yaml", "restore-2", server_dir / "data")
    assert again["phase"] == "Failed"
    assert (f"replica 0: data directory {server_dir / 'data'} is not empty" in again["reason"]
            and "never deletes a database's files" in again["reason"])
