"""An encrypted repository, end to end through Redis, a real worker, S3 and MariaDB: the
round trip is exact, nothing readable is stored, a flipped byte stops the restore before
any byte of its segment reaches the database, and a wrong password is named at pre-check
without being shown."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import zstandard

from tests.integration.conftest import Stack
from tests.integration.resources import standard_setup
from tests.integration.test_backup_restore import created
from tests.integration.test_failures import corrupt_object
from tests.support.compare import differences
from tests.support.sample import create_sample
from workers.encryption import SEGMENT_BYTES, open_encryption
from workers.state.redis import RedisStore
from workflows.errors import IntegrityError
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
    assert config.format_version == 2 and config.encryption is not None
    assert set(stored) == {f"data/{name}/dump.sql.zst", f"snapshots/{name}.json"}
    for key, data in stored.items():
        for plaintext in (canary, database, "CREATE TABLE", "mariadb", PASSWORD):
            assert plaintext.encode() not in data, (key, plaintext)

    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True)
    assert name in listing.stdout and database in listing.stdout  # the CLI decrypts
    check = stack.cli("check", "repo", "--read-data", namespace=namespace, check=True)
    assert "1 snapshot(s), 1 stream(s)" in check.stdout and ": ok" in check.stdout

    restored = f"{database}_restored"
    code, out, err = restore(stack, namespace, restored)
    assert code == 0, out + err
    with stack.mariadb.connect() as conn:
        assert differences(conn, database, restored) == []
        conn.cursor().execute(f"DROP DATABASE `{restored}`")
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    assert PASSWORD not in stack.worker.log() + str(status) + listing.stdout + out + err


ROW_ID = re.compile(rb"\((\d+),'")


@pytest.mark.parametrize("segment", [0, 2])
def test_a_flipped_byte_stops_restore_before_its_segment(stack: Stack, namespace: str,
                                                         database: str, bucket: str,
                                                         tmp_path: Path, segment: int) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"USE `{database}`")
        cur.execute("CREATE TABLE ordered (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO ordered SELECT seq, HEX(RANDOM_BYTES(1024)) "
                    "FROM seq_1_to_4000")  # ~8 MiB of dump, ~4 MiB stored: 4+ segments
        conn.commit()
    setup(stack, namespace, bucket, database, tmp_path)
    name = backup(stack, namespace)
    key = f"data/{name}/dump.sql.zst"
    stored = objects(stack, bucket)
    assert len(stored[key]) > (segment + 2) * SEGMENT_BYTES
    corrupt_object(stack, bucket, f"{PREFIX}/{key}", segment * SEGMENT_BYTES + 4321)

    check = stack.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 7
    assert (f'problem: snapshot "{name}" stream dump.sql.zst: segment {segment} '
            in check.stdout) and "failed authentication" in check.stdout

    restored = f"{database}_r"
    code, _, err = restore(stack, namespace, restored)
    assert code == 8
    assert (f'snapshot "{name}" stream dump.sql.zst is corrupt: segment {segment} ') in err
    assert "failed authentication" in err
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
    if segment == 0:
        assert tables == 0  # not even the CREATE TABLE: nothing reached the client
    else:
        # The database got no row that lies beyond the last authenticated segment.
        last_id = max(int(m) for m in ROW_ID.findall(authenticated_dump(stored, key, segment)))
        assert 0 < last_id < 4000
        assert not rows or rows[-1][0] <= last_id


def authenticated_dump(stored: dict[str, bytes], key: str, segment: int) -> bytes:
    """The dump text that the segments before the corrupt one hold, decrypted with the
    password as a user would (the object here is the one read before the flip)."""
    config = RepositoryConfig.from_json(stored["config.json"])
    assert config.encryption is not None
    cipher = open_encryption(config.encryption, PASSWORD)
    corrupt = bytearray(stored[key])
    corrupt[segment * SEGMENT_BYTES + 4321] ^= 0xFF
    good = bytearray()
    with pytest.raises(IntegrityError):
        for piece in cipher.decrypt([bytes(corrupt)], key.encode()):
            good += piece
    return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(good))


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
