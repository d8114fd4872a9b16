"""An encrypted repository (format 3, what new repositories get), end to end through
Redis, a real worker, S3 and MariaDB: the round trip is exact, nothing readable is
stored, a flipped byte stops the restore before any byte of its chunk reaches the
database, and a wrong password is named at pre-check without being shown. (Format 2's
segments: tests/unit/test_encrypted_repository.py and test_old_repositories.py.)"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from devstack.compare import differences
from devstack.resources import standard_setup
from devstack.sample import create_sample
from devstack.stack import Stack, created
from tests.integration.test_failures import corrupt_object
from workers.state.redis import RedisStore
from workflows.resources import BackupSession, RestoreSession
from workflows.snapshots import RepositoryConfig

PASSWORD = "correct horse battery staple – pässwörd \"#;"
PREFIX = "backups/demo"  #: standard_setup's repository prefix


def objects(stack: Stack, bucket: str) -> dict[str, bytes]:
    client = stack.s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k[len(PREFIX) + 1:]: client.get_object(Bucket=bucket, Key=k)["Body"].read()
            for k in keys}


def setup(stack: Stack, namespace: str, bucket: str, database: str, tmp_path: Path,
          password: str = PASSWORD) -> None:
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database, repository_password=password)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)


def backup(stack: Stack, namespace: str) -> str:
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    return created(result.stdout)


def restore(stack: Stack, namespace: str, database: str) -> tuple[int, str, str]:
    result = stack.cli("restore", "--repository", "repo", "--target", "db", "--database",
                       database, "--wait", namespace=namespace)
    return result.returncode, result.stdout, result.stderr


def test_encrypted_round_trip_stores_nothing_readable(stack: Stack, namespace: str,
                                                      database: str, bucket: str,
                                                      tmp_path: Path) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=200)
        conn.cursor().execute(f"CREATE TABLE `{database}`.notes (id INT PRIMARY KEY, t TEXT)")
        conn.cursor().execute(f"INSERT INTO `{database}`.notes VALUES (1, %s)", (canary,))
        conn.commit()
    setup(stack, namespace, bucket, database, tmp_path)
    name = backup(stack, namespace)

    stored = objects(stack, bucket)
    config = RepositoryConfig.from_json(stored.pop("config.json"))
    assert config.format_version == 3 and config.encryption is not None
    assert {key.split("/")[0] for key in stored} == {"index", "packs", "snapshots"}
    assert f"snapshots/{name}.json" in stored
    for key, data in stored.items():
        for plaintext in (canary, database, "CREATE TABLE", "mariadb", PASSWORD):
            assert plaintext.encode() not in data, (key, plaintext)

    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True)
    assert name in listing.stdout and database in listing.stdout  # the CLI decrypts
    check = stack.cli("check", "repo", "--read-data", namespace=namespace, check=True)
    assert "1 snapshot(s), 1 stream(s)" in check.stdout and ": ok" in check.stdout
    assert 'Repository "repo": format 3 (deduplicating: chunks in packs, encrypted)' in \
        check.stdout

    restored = f"{database}_restored"
    code, out, err = restore(stack, namespace, restored)
    assert code == 0, out + err
    with stack.mariadb.connect() as conn:
        assert differences(conn, database, restored) == []
        conn.cursor().execute(f"DROP DATABASE `{restored}`")
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    assert PASSWORD not in stack.worker.log() + str(status) + listing.stdout + out + err


ROW_ID = re.compile(rb"\((\d+),'")


@pytest.mark.parametrize("where", [0.0, 0.7], ids=["first-chunk", "later-chunk"])
def test_a_flipped_byte_stops_restore_before_its_chunk(stack: Stack, namespace: str,
                                                       database: str, bucket: str,
                                                       tmp_path: Path, where: float) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"USE `{database}`")
        cur.execute("CREATE TABLE ordered (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO ordered SELECT seq, HEX(RANDOM_BYTES(1024)) "
                    "FROM seq_1_to_4000")  # ~8 MiB of dump, ~4 MiB stored: 5+ chunks
        conn.commit()
    setup(stack, namespace, bucket, database, tmp_path)
    name = backup(stack, namespace)
    [pack] = [key for key in objects(stack, bucket) if key.startswith("packs/")]
    size = len(objects(stack, bucket)[pack])
    corrupt_object(stack, bucket, f"{PREFIX}/{pack}", int(size * where) + 100)

    check = stack.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 7
    assert re.search(rf'problem: pack "{pack}": chunk [0-9a-f]{{64}} at byte \d+ is bad: '
                     rf'failed authentication.*; it breaks snapshot\(s\) "{name}"', check.stdout)

    restored = f"{database}_r"
    code, _, err = restore(stack, namespace, restored)
    assert code == 8
    assert re.search(rf'snapshot "{name}" stream dump.sql.zst: chunk [0-9a-f]{{64}} in pack '
                     rf'"{pack}" at byte \d+ is corrupt: failed authentication', err), err
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s",
                    (restored,))
        (tables,) = cur.fetchone()
        rows: list[tuple[int, str]] = []
        if tables:
            cur.execute(f"SELECT id, v FROM `{restored}`.ordered ORDER BY id")
            rows = list(cur.fetchall())
            cur.execute(f"SELECT id, v FROM `{database}`.ordered WHERE id <= %s ORDER BY id",
                        (rows[-1][0] if rows else 0,))
            assert rows == list(cur.fetchall())  # what arrived is the source's first rows
        cur.execute(f"DROP DATABASE IF EXISTS `{restored}`")
    if where == 0.0:
        assert tables == 0  # not even the CREATE TABLE: nothing reached the client
    else:
        assert len(rows) < 4000  # the rows of the bad chunk and after it never arrived


def test_a_wrong_or_missing_password_is_named_at_precheck(stack: Stack, namespace: str,
                                                          database: str, bucket: str,
                                                          tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup(stack, namespace, bucket, database, tmp_path)
    backup(stack, namespace)
    before = set(objects(stack, bucket))

    wrong = "not-the-repository-password"
    setup(stack, namespace, bucket, database, tmp_path, password=wrong)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    expected = ('Repository "repo": RESTIC_PASSWORD in Secret "s3-auth": the password does not '
                "open the repository key")
    assert expected in result.stderr
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, created(result.stdout),
                                                      namespace).status
    assert status["failedStep"] == "stashq.precheck" and expected in str(status["reason"])
    assert set(objects(stack, bucket)) == before  # nothing written

    code, out, err = restore(stack, namespace, f"{database}_r")  # refused before creating
    assert code == 4 and expected in err
    assert RedisStore.from_url(stack.redis_url).list(RestoreSession, namespace) == []
    listing = stack.cli("snapshots", "repo", namespace=namespace)
    assert listing.returncode == 4 and expected in listing.stderr
    everything = stack.worker.log() + result.stderr + err + listing.stderr + str(status)
    assert wrong not in everything and PASSWORD not in everything

    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)  # the password removed from the Secret
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    assert ('Repository "repo" is encrypted: set its password as RESTIC_PASSWORD in Secret '
            '"s3-auth"') in result.stderr
