"""A restore never takes another database's snapshot, never replaces tables unasked, and
creates nothing when what it names does not exist: through the real CLI, a real worker,
S3 and MariaDB."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.resources import backup_configuration, restore_session, standard_setup
from devstack.stack import Stack, created, wait_restore
from workers.state.redis import RedisStore
from workflows.resources import RestoreSession


@pytest.fixture
def blog(stack: Stack) -> Iterator[str]:
    """A second database, with a table the first one does not have."""
    name = f"blog_{uuid.uuid4().hex[:12]}"
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"CREATE TABLE `{name}`.posts (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{name}`.posts VALUES (1), (2)")
    yield name
    drop(stack, name)


def drop(stack: Stack, *databases: str) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        for name in databases:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def tables(stack: Stack, database: str) -> list[str]:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "ORDER BY 1", (database,))
        return [name for (name,) in cur.fetchall()]


def restore_sessions(stack: Stack, namespace: str) -> list[RestoreSession]:
    return RedisStore.from_url(stack.redis_url).list(RestoreSession, namespace)


def two_configurations(stack: Stack, namespace: str, database: str, blog: str, bucket: str,
                       tmp_path: Path) -> tuple[str, str]:
    """"nightly" (``database``) and "blog" (``blog``) back up into one repository, blog
    last; return the two snapshot ids."""
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.customers (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{database}`.customers VALUES (7)")
    setup = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    (tmp_path / "blog.yaml").write_text(backup_configuration("blog", "repo", "db", blog))
    stack.cli("apply", "-f", str(setup), "-f", str(tmp_path / "blog.yaml"), namespace=namespace,
              check=True)
    shop_snapshot = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                                      check=True).stdout)
    blog_snapshot = created(stack.cli("backup", "blog", "--wait", namespace=namespace,
                                      check=True).stdout)
    return shop_snapshot, blog_snapshot


def test_latest_with_two_sources_is_refused_until_the_source_is_named(
        stack: Stack, namespace: str, database: str, blog: str, bucket: str,
        tmp_path: Path) -> None:
    shop_snapshot, blog_snapshot = two_configurations(stack, namespace, database, blog, bucket,
                                                      tmp_path)
    copy = f"{database}_copy"
    refused = stack.cli("restore", "--repository", "repo", "--target", "db", "--database", copy,
                        "--wait", namespace=namespace)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert '"latest" is ambiguous' in refused.stderr and "--source" in refused.stderr
    assert f"nightly (AppBinding db) → {shop_snapshot}" in refused.stderr
    assert f"blog (AppBinding db) → {blog_snapshot}" in refused.stderr
    assert restore_sessions(stack, namespace) == [] and copy not in databases(stack)

    try:
        done = stack.cli("restore", "--repository", "repo", "--target", "db", "--source",
                         "nightly", "--database", copy, "--wait", namespace=namespace,
                         check=True)
        assert f"snapshot {shop_snapshot} of nightly (AppBinding db)\n" in done.stdout
        assert tables(stack, copy) == ["customers"]  # nightly's table, not blog's posts
    finally:
        drop(stack, copy)


def test_a_restore_session_names_its_source_in_source_host(
        stack: Stack, namespace: str, database: str, blog: str, bucket: str,
        tmp_path: Path) -> None:
    shop_snapshot, _ = two_configurations(stack, namespace, database, blog, bucket, tmp_path)
    copy = f"{database}_copy"
    for name, rule in (("unnamed", {"snapshots": ["latest"]}),
                       ("named", {"sourceHost": "nightly", "snapshots": ["latest"]})):
        (tmp_path / f"{name}.yaml").write_text(restore_session(
            name, target={"rules": [rule]},
            task={"params": [{"name": "database", "value": copy}]}))
        stack.cli("apply", "-f", str(tmp_path / f"{name}.yaml"), namespace=namespace,
                  check=True)
    try:
        unnamed = wait_restore(stack, namespace, "unnamed", 120)
        assert unnamed["phase"] == "Failed" and '"latest" is ambiguous' in unnamed["reason"]
        named = wait_restore(stack, namespace, "named", 120)
        assert named["phase"] == "Succeeded", named
        assert named["snapshot"]["name"] == shop_snapshot
        assert tables(stack, copy) == ["customers"]
    finally:
        drop(stack, copy)


def databases(stack: Stack) -> list[str]:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        return [name for (name,) in cur.fetchall()]


def backed_up_then_changed(stack: Stack, namespace: str, database: str, bucket: str,
                           tmp_path: Path) -> None:
    """``database`` backed up holding customer 1, then customer 2 added."""
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.customers (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{database}`.customers VALUES (1)")
    setup = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO `{database}`.customers VALUES (2)")


def test_restoring_into_a_database_with_tables_needs_overwrite(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    backed_up_then_changed(stack, namespace, database, bucket, tmp_path)
    refused = stack.cli("restore", "--repository", "repo", "--target", "db", "--wait",
                        namespace=namespace)
    assert refused.returncode == 8, refused.stdout + refused.stderr
    assert (f'database(s) "{database}" (1 table(s)) exist and hold tables that the restore '
            "would overwrite; nothing was touched") in refused.stderr
    assert "stashq restore --overwrite" in refused.stderr
    assert "--database NAME" in refused.stderr
    assert customer_ids(stack, database) == [1, 2]  # untouched

    stack.cli("restore", "--repository", "repo", "--target", "db", "--overwrite", "--wait",
              namespace=namespace, check=True)
    assert customer_ids(stack, database) == [1]  # the snapshot's rows


def test_a_restore_session_states_overwrite_in_its_target(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    backed_up_then_changed(stack, namespace, database, bucket, tmp_path)
    for name, overwrite in (("keep", False), ("replace", True)):
        (tmp_path / f"{name}.yaml").write_text(restore_session(
            name, target={"overwrite": overwrite}))
        stack.cli("apply", "-f", str(tmp_path / f"{name}.yaml"), namespace=namespace,
                  check=True)
        status = wait_restore(stack, namespace, name, 120)
        if name == "keep":
            assert status["phase"] == "Failed" and "spec.target.overwrite: true" in status["reason"]
            assert customer_ids(stack, database) == [1, 2]
    assert status["phase"] == "Succeeded", status
    assert customer_ids(stack, database) == [1]


def customer_ids(stack: Stack, database: str) -> list[int]:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT id FROM `{database}`.customers ORDER BY id")
        return [int(i) for (i,) in cur.fetchall()]


@pytest.mark.parametrize(("args", "message"), [
    (("--repository", "nope", "--target", "db"),
     'Repository "nope" not found'),
    (("--repository", "repo", "--target", "nope"),
     'AppBinding "nope" not found'),
    (("--repository", "repo", "--target", "db", "--snapshot", "nightly-1"),
     'snapshot "nightly-1" not found in Repository "repo"'),
    (("--repository", "repo", "--target", "db", "--source", "blog"),
     'Repository "repo" has no snapshot of "blog"'),
])
def test_restore_checks_first_and_creates_nothing_on_failure(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        args: tuple[str, ...], message: str) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    result = stack.cli("restore", *args, "--database", f"{database}_x", namespace=namespace)
    assert result.returncode == 3, result.stdout + result.stderr
    assert message in result.stderr and result.stdout == ""
    assert restore_sessions(stack, namespace) == []
