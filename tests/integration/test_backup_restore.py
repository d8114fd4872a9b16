"""The user's story end to end: apply resources, back up through Redis and a real worker
to S3, restore into a new database, and find the two equal."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from devstack.compare import differences
from devstack.resources import standard_setup
from devstack.sample import create_sample
from devstack.stack import Stack, created
from workers.state.redis import RedisStore
from workflows.resources import BackupSession, Repository, RestoreSession


def test_round_trip_through_the_queue(stack: Stack, namespace: str, database: str, bucket: str,
                                      tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database)
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    applied = stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    assert "BackupConfiguration/nightly created" in applied.stdout

    backup = stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    session_name = created(backup.stdout)
    assert f"BackupSession/{session_name} Succeeded" in backup.stdout

    store = RedisStore.from_url(stack.redis_url)
    status = store.get(BackupSession, session_name, namespace).status
    assert status["phase"] == "Succeeded"
    assert status["snapshot"]["name"] == session_name
    assert 0 < status["snapshot"]["totalSize"] < status["snapshot"]["rawSize"]
    assert store.get(Repository, "repo", namespace).status["snapshotCount"] == 1

    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True)
    assert session_name in listing.stdout and database in listing.stdout

    restored = f"{database}_restored"
    result = stack.cli("restore", "--repository", "repo", "--target", "db", "--database",
                       restored, "--wait", namespace=namespace, check=True)
    restore_name = created(result.stdout)
    assert store.get(RestoreSession, restore_name, namespace).status["phase"] == "Succeeded"
    with stack.mariadb.connect() as conn:
        assert differences(conn, database, restored) == []
        conn.cursor().execute(f"UPDATE `{restored}`.attachments SET payload = 'x' LIMIT 1")
        assert differences(conn, database, restored) != []  # the comparison can tell
        conn.cursor().execute(f"DROP DATABASE `{restored}`")

    with urllib.request.urlopen(f"{stack.pushgateway.url}/metrics") as response:
        metrics = response.read().decode()
    job = f'job="stashq-backupconfiguration-{namespace}-nightly"'
    assert any(line.startswith("stashq_backupsession_success{") and job in line
               and line.endswith(" 1") for line in metrics.splitlines())
    assert 'stashq_restoresession_success{' in metrics


def test_backing_up_the_same_session_again_takes_no_second_snapshot(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=20)
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    first = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                              check=True).stdout)
    # A redelivered chain (same session) must find its snapshot, not take another.
    from workers.app import create_app
    from workers.context import SessionRef
    from workflows.settings import Settings

    settings = Settings.from_env(stack.env)
    app = create_app(settings)
    app.signature("stashq.dump_upload", args=(str(SessionRef("BackupSession", namespace, first)),
                                              {"databases": database}),
                  queue="stashq.data").apply_async()
    # The session is final, so the step stops the chain at once (it stores no result).
    stopped = f"[{first}] workers.steps.session: step stashq.dump_upload: session already Succeeded"
    deadline = time.monotonic() + 120
    while stopped not in stack.worker.log():
        assert time.monotonic() < deadline, stack.worker.log()[-3000:]
        time.sleep(0.2)
    keys = [o["Key"] for o in stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sum(k.endswith(".json") and "/snapshots/" in k for k in keys) == 1


def test_a_user_defined_task_runs_its_own_steps(stack: Stack, namespace: str, database: str,
                                                bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    task = tmp_path / "task.yaml"
    task.write_text("""apiVersion: stashq.io/v1alpha1
kind: Task
metadata: {name: quick-backup}
spec:
  engine: mariadb
  steps:
    - {name: precheck}
    - name: logical-backup
      params: [{name: zstdLevel, value: "1"}]
    - {name: update-status}
""")
    resources.write_text(resources.read_text().replace("  task:\n",
                                                       "  task:\n    name: quick-backup\n"))
    stack.cli("apply", "-f", str(task), "-f", str(resources), namespace=namespace, check=True)
    name = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    assert status["phase"] == "Succeeded"
    assert "RepositoryMetricsPushed" not in status.get("conditions", {})  # no metrics step
