"""What a user sees when things go wrong: a Failed session with a reason that names the
culprit, no snapshot, no open multipart upload, and no password anywhere."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.resources import standard_setup
from devstack.stack import Stack, created
from workers.state.redis import RedisStore
from workflows.resources import BackupConfiguration, BackupSession, Repository


def snapshot_keys(stack: Stack, bucket: str) -> list[str]:
    objects = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in objects if "/snapshots/" in o["Key"]]


def open_uploads(stack: Stack, bucket: str) -> list[object]:
    return stack.s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def backup_status(stack: Stack, namespace: str, name: str) -> dict[str, object]:
    return RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status


def test_wrong_password_fails_naming_the_appbinding(stack: Stack, namespace: str, database: str,
                                                    bucket: str, tmp_path: Path) -> None:
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, database,
                               db_password="not-the-password")
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    assert 'AppBinding "db": access denied for user "root"' in result.stderr
    name = created(result.stdout)
    status = backup_status(stack, namespace, name)
    assert status["phase"] == "Failed" and "access denied" in str(status["reason"])
    shown = RedisStore.from_url(stack.redis_url).get(BackupConfiguration, "nightly",
                                                     namespace).status["lastBackup"]
    assert shown == {"session": name, "phase": "Failed", "reason": status["reason"],
                     "completionTime": status["completionTime"],
                     "completionTimestamp": status["completionTimestamp"]}  # no snapshot
    assert snapshot_keys(stack, bucket) == []
    assert "not-the-password" not in stack.worker.log() + result.stderr + str(status)


def test_missing_bucket_names_repository_and_bucket(stack: Stack, namespace: str, database: str,
                                                    tmp_path: Path) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, missing, database)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    assert 'Repository "repo"' in result.stderr and f'bucket "{missing}"' in result.stderr


def test_wrong_s3_secret_is_reported_without_the_secret(stack: Stack, namespace: str,
                                                        database: str, bucket: str,
                                                        tmp_path: Path) -> None:
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, database,
                               s3_secret="wrong-secret-key-value")
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8 and 'Repository "repo"' in result.stderr
    assert "wrong-secret-key-value" not in result.stderr + stack.worker.log()


PASSWORD = 'Sé cr3t"`\\ pa$$ #;'


@pytest.fixture
def backup_user(stack: Stack) -> Iterator[str]:
    user = f"u{uuid.uuid4().hex[:8]}"
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
        cur.execute(f"GRANT ALL ON *.* TO `{user}`@'%'")
    yield user
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER `{user}`@'%'")


def dump_pids(database: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"mariadb-dump" in cmdline and database.encode() in cmdline:
                pids.append(int(entry))
    return pids


def test_killed_dump_leaves_no_snapshot_and_no_upload(stack: Stack, namespace: str, database: str,
                                                      bucket: str, tmp_path: Path,
                                                      backup_user: str) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"USE `{database}`")
        cur.execute("CREATE TABLE a_big (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)")
        cur.execute("INSERT INTO a_big (v) SELECT RANDOM_BYTES(1024) FROM seq_1_to_20000")
        cur.execute("UPDATE a_big SET v = HEX(v)")
        cur.execute("CREATE TABLE z_locked (id INT PRIMARY KEY)")
        conn.commit()
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, database)
    text = resources.read_text().replace('username: "root"', f'username: "{backup_user}"')
    resources.write_text(text.replace('password: ""', f"password: {json.dumps(PASSWORD)}"))
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)

    with stack.mariadb.connect() as locker, locker.cursor() as cur:
        cur.execute(f"LOCK TABLES `{database}`.`z_locked` WRITE")  # the dump stalls here
        result: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: result.update(
            r=stack.cli("backup", "nightly", "--wait", namespace=namespace)))
        waiter.start()
        deadline = time.monotonic() + 60
        while not (pids := dump_pids(database)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not pids:
            waiter.join(timeout=60)
            pytest.fail(f"the dump never started: {result}\n{stack.worker.log()[-3000:]}")
        cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode(errors="replace")
        assert "cr3t" not in cmdline and backup_user not in cmdline
        assert "--defaults-file=" in cmdline
        deadline = time.monotonic() + 60
        while not open_uploads(stack, bucket) and time.monotonic() < deadline:
            time.sleep(0.1)  # the first part of a_big is on its way
        os.kill(pids[0], 9)
        waiter.join(timeout=120)
        cur.execute("UNLOCK TABLES")

    completed = result["r"]
    assert completed.returncode == 8  # type: ignore[attr-defined]
    name = created(completed.stdout)  # type: ignore[attr-defined]
    status = backup_status(stack, namespace, name)
    assert status["phase"] == "Failed"
    assert "mariadb-dump was killed by signal 9" in str(status["reason"])
    assert snapshot_keys(stack, bucket) == []
    assert open_uploads(stack, bucket) == []
    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True)
    assert name not in listing.stdout
    store = RedisStore.from_url(stack.redis_url)
    assert store.get(Repository, "repo", namespace).status.get("snapshotCount", 0) == 0
    everything = stack.worker.log() + completed.stderr + str(status)  # type: ignore[attr-defined]
    assert "cr3t" not in everything


def test_malformed_file_applies_nothing(stack: Stack, namespace: str, tmp_path: Path,
                                        bucket: str, database: str) -> None:
    good = standard_setup(tmp_path / "good.yaml", stack.s3, stack.mariadb, bucket, database)
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace('schedule: "0 3 * * *"', 'schedule: "61 * * * *"'))
    result = stack.cli("apply", "-f", str(bad), namespace=namespace)
    assert result.returncode == 2
    assert (f'{bad}#4: BackupConfiguration "nightly": spec.schedule: "61 * * * *" is not a '
            "cron expression") in result.stderr
    assert RedisStore.from_url(stack.redis_url).list(Repository, namespace) == []

    dangling = tmp_path / "dangling.yaml"
    dangling.write_text(good.read_text().replace("repository: {name: repo}",
                                                 "repository: {name: nowhere}"))
    result = stack.cli("apply", "-f", str(dangling), namespace=namespace)
    assert result.returncode == 2
    assert ('BackupConfiguration "nightly": spec.repository.name: Repository "nowhere" does '
            "not exist") in result.stderr
    assert RedisStore.from_url(stack.redis_url).list(Repository, namespace) == []


@pytest.mark.parametrize(("param", "value", "message"), [
    ("zstdLevel", "99", 'param "zstdLevel" = "99": Input should be less than or equal to 22'),
    ("parallel", "two", 'param "parallel" = "two": Input should be a valid integer'),
])
def test_a_bad_param_value_is_refused_at_apply_naming_it(
        stack: Stack, namespace: str, tmp_path: Path, bucket: str, database: str,
        param: str, value: str, message: str) -> None:
    good = standard_setup(tmp_path / "good.yaml", stack.s3, stack.mariadb, bucket, database)
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace(
        "      - {name: databases,", f"      - {{name: {param}, value: {value!r}}}\n"
                                    "      - {name: databases,"))
    result = stack.cli("apply", "-f", str(bad), namespace=namespace)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (f'{bad}#4: BackupConfiguration "nightly": spec.task.params: Task '
            f'"mariadb-backup-10.11" step "logical-backup": {message}') in result.stderr
    assert RedisStore.from_url(stack.redis_url).list(Repository, namespace) == []


def corrupt_object(stack: Stack, bucket: str, key: str, offset: int) -> None:
    client = stack.s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[offset] ^= 0xFF
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))


@pytest.mark.parametrize("where", ["middle", "last chunk"])
def test_corrupt_snapshot_fails_restore_naming_it(stack: Stack, namespace: str, database: str,
                                                  bucket: str, tmp_path: Path,
                                                  where: str) -> None:
    from devstack.sample import create_sample

    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=300)
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    name = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)
    objects = stack.s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    (pack,) = [o for o in objects if "/packs/" in o["Key"]]
    check = stack.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 0 and "1 snapshot(s), 1 stream(s)" in check.stdout
    # The last chunk of the pack, just before its trailer, is the stream's chunk list.
    tail = stack.s3.client().get_object(Bucket=bucket, Key=pack["Key"])["Body"].read()[-8:]
    trailer_bytes = int.from_bytes(tail[:4], "big") + 8
    offset = pack["Size"] // 3 if where == "middle" else pack["Size"] - trailer_bytes - 1
    corrupt_object(stack, bucket, pack["Key"], offset)
    # Without --read-data check reads the chunk lists only: it sees a corrupt list.
    quick = stack.cli("check", "repo", namespace=namespace)
    assert quick.returncode == (7 if where == "last chunk" else 0), quick.stdout
    check = stack.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 7
    short = pack["Key"].split("/", 2)[2]  # below the repository's prefix
    assert f'problem: pack "{short}": chunk ' in check.stdout
    assert 'is bad: ' in check.stdout and f'it breaks snapshot(s) "{name}"' in check.stdout

    result = stack.cli("restore", "--repository", "repo", "--target", "db", "--database",
                       f"{database}_r", "--wait", namespace=namespace)
    assert result.returncode == 8
    assert f'snapshot "{name}" stream dump.sql.zst' in result.stderr
    assert f'in pack "{short}" at byte' in result.stderr and "is corrupt" in result.stderr


def test_task_for_another_engine_fails_precheck(stack: Stack, namespace: str, database: str,
                                                bucket: str, tmp_path: Path) -> None:
    resources = standard_setup(tmp_path / "s.yaml", stack.s3, stack.mariadb, bucket, database)
    resources.write_text(resources.read_text().replace("  task:\n",
                                                       "  task:\n    name: mysql-backup-8.0\n"))
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    assert 'Task "mysql-backup-8.0" is for mysql, but AppBinding "db" is mariadb' in result.stderr
    assert snapshot_keys(stack, bucket) == []
