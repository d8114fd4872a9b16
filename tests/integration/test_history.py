"""History limits hold without `stashq beat`: the worker that ends a session deletes the
finished sessions beyond the limit, on success and on failure alike, for BackupSessions
(``backupHistoryLimit``) and RestoreSessions (``STASHQ_RESTORE_HISTORY_LIMIT``)."""

from __future__ import annotations

from pathlib import Path

from devstack.resources import standard_setup
from devstack.stack import Deploy, created
from workers.state.redis import RedisStore
from workflows.resources import BackupSession, RestoreSession


def test_finished_sessions_beyond_the_limit_are_deleted_where_they_finish(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    deployment = deploy()
    deployment.start_worker(STASHQ_RESTORE_HISTORY_LIMIT="2")  # and no beat at all
    with deployment.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup = standard_setup(tmp_path / "setup.yaml", deployment.s3, deployment.mariadb,
                           bucket, database)  # backupHistoryLimit: the default, 1
    deployment.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    store = RedisStore.from_url(deployment.redis_url)

    def names(cls: type[BackupSession] | type[RestoreSession]) -> set[str]:
        return {s.name for s in store.list(cls, namespace)}

    first = created(deployment.cli("backup", "nightly", "--wait", namespace=namespace,
                                   check=True).stdout)
    second = created(deployment.cli("backup", "nightly", "--wait", namespace=namespace,
                                    check=True).stdout)
    assert names(BackupSession) == {second}  # deleted when the second one succeeded

    with deployment.mariadb.connect() as conn:  # the next backup fails: no such database
        conn.cursor().execute(f"DROP DATABASE `{database}`")
    failed = deployment.cli("backup", "nightly", "--wait", namespace=namespace)
    assert failed.returncode == 8
    assert names(BackupSession) == {created(failed.stdout)}
    assert first not in names(BackupSession)

    with deployment.mariadb.connect() as conn:  # restores refused: the database has tables
        conn.cursor().execute(f"CREATE DATABASE `{database}`")
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    restores = []
    for _ in range(3):
        result = deployment.cli("restore", "--repository", "repo", "--target", "db",
                                "--snapshot", second, "--wait", namespace=namespace)
        assert result.returncode == 8 and "overwrite" in result.stderr
        restores.append(created(result.stdout))
    assert names(RestoreSession) == set(restores[1:])
