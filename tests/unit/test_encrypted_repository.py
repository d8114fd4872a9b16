"""An encrypted repository of format 2 (one object per stream; format 3 is in
test_format3.py) in a directory, through the Repository object: what is
stored holds no plaintext, what is read back is authenticated before it is released,
manifests cannot be edited or moved, the password is checked before anything else, and
``stashq check --read-data`` authenticates every segment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from workers.encryption import SEGMENT_BYTES
from workers.repository import Repository
from workers.storage.local import LocalStorage
from workflows.errors import IntegrityError, PrecheckFailed
from workflows.snapshots import CONFIG_KEY, Snapshot, Stream, manifest_key

PASSWORD = "s3cr3t pässword"
#: Text that compresses poorly (hex), so the stream spans several 1 MiB segments.
RAW = b"".join(b"INSERT INTO t VALUES (%d,'%s');\n" % (i, os.urandom(64).hex().encode())
               for i in range(40_000))
MARKER = b"INSERT INTO t VALUES (4242,"


def open_repo(root: Path, password: str | None) -> Repository:
    repo = Repository(LocalStorage(root), "repo", password, "s3-auth", new_format=2)
    repo.ensure_config(contextlib.nullcontext)  # no other writer in a test
    return repo


def backup(repo: Repository, snapshot_id: str = "snap-1") -> Snapshot:
    stream = repo.write_stream(snapshot_id, "dump.sql.zst",
                               [RAW[i:i + 2**20] for i in range(0, len(RAW), 2**20)], level=1)
    now = datetime.now(UTC)
    snapshot = Snapshot(id=snapshot_id, session=snapshot_id, repository="repo",
                        engine="mariadb", server_version="10.11", target="db",
                        databases=("secret_shop",), streams=(stream,), started_at=now,
                        finished_at=now)
    repo.commit(snapshot)
    return snapshot


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_round_trip_and_no_plaintext_at_rest(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    snapshot = backup(repo)
    (stream,) = snapshot.streams
    assert stream.size_bytes > 2 * SEGMENT_BYTES
    loaded = repo.resolve_snapshot("snap-1")
    assert loaded == snapshot
    assert b"".join(repo.read_stream(loaded, loaded.streams[0])) == RAW
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
                      and p.name != CONFIG_KEY)
    assert MARKER not in stored and b"secret_shop" not in stored and b"mariadb" not in stored
    config = json.loads((tmp_path / CONFIG_KEY).read_text())
    assert config["formatVersion"] == 2
    assert config["encryption"]["scheme"] == "AES256_GCM_HKDF_1MB"
    assert PASSWORD not in json.dumps(config)


def test_a_repository_without_a_password_stays_plain(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, None)
    assert repo.cipher is None
    backup(repo)
    assert json.loads((tmp_path / CONFIG_KEY).read_text()) == {"formatVersion": 1}
    assert b"secret_shop" in (tmp_path / manifest_key("snap-1")).read_bytes()


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_a_flipped_byte_releases_nothing_from_its_segment_on(tmp_path: Path,
                                                              segment: int) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    snapshot = backup(repo)
    (stream,) = snapshot.streams
    flip(tmp_path / stream.key, segment * SEGMENT_BYTES + 1000)
    received = bytearray()
    with pytest.raises(IntegrityError) as e:
        for chunk in repo.read_stream(snapshot, stream):
            received += chunk
    assert f'snapshot "snap-1" stream dump.sql.zst is corrupt: segment {segment} ' in str(e.value)
    assert RAW.startswith(received)
    # What zstd could make of the segments before the corrupt one, and not a byte more.
    assert len(received) <= authenticated_prefix(repo, stream)
    if segment == 0:
        assert received == b""


def authenticated_prefix(repo: Repository, stream: Stream) -> int:
    """Bytes of the raw dump that the segments before the corrupt one decompress to."""
    cipher = repo.cipher
    assert cipher is not None
    good = bytearray()
    try:
        for piece in cipher.decrypt(repo.storage.get_stream(stream.key), stream.key.encode()):
            good += piece
    except IntegrityError:
        pass
    dobj = zstandard.ZstdDecompressor().decompressobj()
    return len(dobj.decompress(bytes(good)))


def test_a_truncated_stream_is_refused(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    snapshot = backup(repo)
    (stream,) = snapshot.streams
    path = tmp_path / stream.key
    path.write_bytes(path.read_bytes()[:2 * SEGMENT_BYTES])
    with pytest.raises(IntegrityError, match="it was truncated"):
        b"".join(repo.read_stream(snapshot, stream))


def test_data_copied_under_another_key_does_not_open(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    first = backup(repo, "snap-1")
    second = backup(repo, "snap-2")
    # Make snap-2's object the bytes of snap-1's, with the size and sha256 snap-2 expects.
    shutil.copy(tmp_path / first.streams[0].key, tmp_path / second.streams[0].key)
    forged = second.streams[0].model_copy(update={"size_bytes": first.streams[0].size_bytes,
                                                  "sha256": first.streams[0].sha256})
    with pytest.raises(IntegrityError, match="segment 0 .* failed authentication"):
        b"".join(repo.read_stream(second, forged))


def snapshot_json(snapshot_id: str) -> bytes:
    now = datetime.now(UTC)
    return Snapshot(id=snapshot_id, session=snapshot_id, repository="repo", engine="mariadb",
                    server_version="10.11", target="db", streams=(), started_at=now,
                    finished_at=now).to_json()


def test_a_manifest_cannot_be_edited_moved_or_forged(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    backup(repo, "snap-1")
    backup(repo, "snap-2")
    shutil.copy(tmp_path / manifest_key("snap-1"), tmp_path / manifest_key("snap-2"))
    with pytest.raises(IntegrityError, match='manifest of snapshot "snap-2" is corrupt'):
        repo.find_snapshot("snap-2")
    flip(tmp_path / manifest_key("snap-1"), 60)
    with pytest.raises(IntegrityError, match='manifest of snapshot "snap-1" is corrupt'):
        repo.find_snapshot("snap-1")
    plain = snapshot_json("snap-2")  # a plaintext manifest is no manifest here
    (tmp_path / manifest_key("snap-2")).write_bytes(plain)
    with pytest.raises(IntegrityError, match="snap-2"):
        repo.find_snapshot("snap-2")


@pytest.mark.parametrize(("created_with", "opened_with", "expected"), [
    (PASSWORD, None, 'Repository "repo" is encrypted: set its password as RESTIC_PASSWORD in '
                     'Secret "s3-auth"'),
    (PASSWORD, "wrong", 'Repository "repo": RESTIC_PASSWORD in Secret "s3-auth": the password '
                        "does not open the repository key"),
    (None, PASSWORD, 'Repository "repo" is not encrypted, but RESTIC_PASSWORD in Secret '
                     '"s3-auth" is set'),
])
def test_the_password_is_checked_first_and_never_shown(tmp_path: Path, created_with: str | None,
                                                       opened_with: str | None,
                                                       expected: str) -> None:
    open_repo(tmp_path, created_with)
    with pytest.raises(PrecheckFailed) as e:
        Repository(LocalStorage(tmp_path), "repo", opened_with, "s3-auth").cipher  # noqa: B018
    assert expected in str(e.value)
    assert PASSWORD not in str(e.value) and "wrong" not in str(e.value).replace(
        "a wrong password", "")


def test_a_new_repository_has_nothing_to_unlock(tmp_path: Path) -> None:
    repo = Repository(LocalStorage(tmp_path), "repo", PASSWORD, "s3-auth")
    assert repo.cipher is None and repo.config is None


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / CONFIG_KEY).write_text('{"formatVersion": 4}')
    with pytest.raises(IntegrityError, match="newer than this StashQ understands"):
        Repository(LocalStorage(tmp_path), "repo").config  # noqa: B018


def test_check_read_data_authenticates_every_segment(tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    (stream,) = backup(repo).streams
    report = repo.check(read_data=True)
    assert report.ok and report.bytes_read == stream.size_bytes
    flip(tmp_path / stream.key, SEGMENT_BYTES + 5)
    assert repo.check().ok  # sizes alone cannot tell
    report = repo.check(read_data=True)
    assert report.problems == [f'snapshot "snap-1" stream dump.sql.zst: segment 1 (stored bytes '
                               f"{SEGMENT_BYTES}-{2 * SEGMENT_BYTES}) failed authentication: "
                               "the object was altered, reordered, or copied from another key "
                               "or repository"]
