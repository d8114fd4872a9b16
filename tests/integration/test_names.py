"""Databases and tables whose names contain backticks, quotes, spaces and unicode are
backed up and restored as they are."""

from __future__ import annotations

import uuid
from pathlib import Path

from devstack.compare import differences
from devstack.resources import standard_setup
from devstack.stack import Stack


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def test_awkward_names_round_trip(stack: Stack, namespace: str, bucket: str,
                                  tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = [f"we`ird 'db\" {suffix}", f"ünïcödé-数据-{suffix}", f"-dash {suffix}"]
    tables = ["t`ick", "sp ace 'q' \"dq\"", "ẞtraße", "; DROP TABLE x; --"]
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        for db in names:
            cur.execute(f"CREATE DATABASE {q(db)} CHARACTER SET utf8mb4")
            for i, table in enumerate(tables):
                cur.execute(f"CREATE TABLE {q(db)}.{q(table)} (id INT PRIMARY KEY, "
                            f"{q('col `x`')} VARCHAR(40)) CHARSET utf8mb4")
                cur.execute(f"INSERT INTO {q(db)}.{q(table)} VALUES (%s, %s)", (i, f"v{i}🙂"))
        conn.commit()
    try:
        resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket,
                                   ",".join(names))
        stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
        stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
        # A multi-database snapshot recreates its databases by name: restore into a
        # fresh server state by renaming the originals out of the way first.
        with stack.mariadb.connect() as conn, conn.cursor() as cur:
            for db in names:
                cur.execute(f"CREATE DATABASE {q(db + ' orig')} CHARACTER SET utf8mb4")
                for table in tables:
                    cur.execute(f"RENAME TABLE {q(db)}.{q(table)} TO {q(db + ' orig')}.{q(table)}")
                cur.execute(f"DROP DATABASE {q(db)}")
        stack.cli("restore", "--repository", "repo", "--target", "db", "--wait",
                  namespace=namespace, check=True)
        with stack.mariadb.connect() as conn:
            for db in names:
                assert differences(conn, db + " orig", db) == []
    finally:
        with stack.mariadb.connect() as conn, conn.cursor() as cur:
            for db in names:
                cur.execute(f"DROP DATABASE IF EXISTS {q(db)}")
                cur.execute(f"DROP DATABASE IF EXISTS {q(db + ' orig')}")


def test_one_awkward_database_restores_under_a_new_name(stack: Stack, namespace: str,
                                                        bucket: str, tmp_path: Path) -> None:
    source, target = f"sp ace`{uuid.uuid4().hex[:6]}", f"nëw `name` {uuid.uuid4().hex[:6]}"
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {q(source)}")
        cur.execute(f"CREATE TABLE {q(source)}.t (id INT PRIMARY KEY, s TEXT)")
        cur.execute(f"INSERT INTO {q(source)}.t VALUES (1, 'ok')")
        conn.commit()
    try:
        resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, source)
        stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
        stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
        stack.cli("restore", "--repository", "repo", "--target", "db", "--database", target,
                  "--wait", namespace=namespace, check=True)
        with stack.mariadb.connect() as conn:
            assert differences(conn, source, target) == []
    finally:
        with stack.mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {q(source)}")
            cur.execute(f"DROP DATABASE IF EXISTS {q(target)}")
