"""One contract for every repository backend.

As in borgstore's backend tests, each test body says what a user of ``Storage`` relies
on and runs against every implementation through the ``backend`` fixture. A backend
also brings the two things only it can see: unfinished writes (open multipart uploads,
temp files), and a way to leave one behind as a killed writer would. Tests below the
contract cover what one backend alone promises: S3's error messages and its bound on
parts in flight, the local directory's refusal of keys outside its root.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from workers.storage.base import READ_CHUNK_BYTES, Storage
from workers.storage.local import TMP_MARKER, LocalStorage
from workers.storage.s3 import MIN_PART_BYTES, S3Storage
from workflows.errors import (
    BucketNotFound,
    IntegrityError,
    NotFound,
    StorageError,
    TransientStorageError,
)

PART_BYTES = MIN_PART_BYTES  #: bytes; the smallest part S3 allows keeps multipart tests fast
SOURCE_CHUNK_BYTES = 2**20 + 7  #: bytes; odd, so chunks straddle part boundaries
PREFIX = "repo"  #: the repository prefix (S3) or directory (local) under test


class SourceFailed(Exception):
    """Raised by a test's chunk iterator, as a failing dump would."""


@dataclass
class Backend:
    storage: Storage
    incomplete: Callable[[], int]  #: how many unfinished writes the backend holds
    leave_incomplete: Callable[[str], None]  #: start a write under a key and abandon it


def payload(size_bytes: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size_bytes)


def chunked(data: bytes, chunk_bytes: int = SOURCE_CHUNK_BYTES) -> Iterator[bytes]:
    for start in range(0, len(data), chunk_bytes):
        yield data[start:start + chunk_bytes]


def failing(data: bytes) -> Iterator[bytes]:
    yield from chunked(data)
    raise SourceFailed("the dump client exited with status 2")


def read(storage: Storage, key: str) -> bytes:
    return b"".join(storage.get_stream(key))


def make_s3(s3_server: Any, bucket: str, **overrides: Any) -> S3Storage:
    settings: dict[str, Any] = dict(
        endpoint=s3_server.endpoint, bucket=bucket, prefix=PREFIX, region=s3_server.region,
        access_key=s3_server.access_key, secret_key=s3_server.secret_key,
        part_bytes=PART_BYTES, max_attempts=2)
    return S3Storage(**{**settings, **overrides})


def local_backend(root: Path) -> Backend:
    def incomplete() -> int:
        return sum(1 for path in root.rglob(f"*{TMP_MARKER}*"))

    def leave_incomplete(key: str) -> None:
        path = root / f"{key}{TMP_MARKER}killed"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a dump")

    return Backend(LocalStorage(root), incomplete, leave_incomplete)


def s3_backend(s3_server: Any, bucket: str) -> Backend:
    client = s3_server.client()

    def incomplete() -> int:
        return len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def leave_incomplete(key: str) -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key=f"{PREFIX}/{key}")
        client.upload_part(Bucket=bucket, Key=f"{PREFIX}/{key}", UploadId=upload["UploadId"],
                           PartNumber=1, Body=b"half a dump")

    return Backend(make_s3(s3_server, bucket), incomplete, leave_incomplete)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path / PREFIX)
    # Looked up only here, so the local half runs even where no S3 server can start.
    s3_server = request.getfixturevalue("s3_server")
    return s3_backend(s3_server, request.getfixturevalue("bucket"))


# --- the contract ------------------------------------------------------------------


def test_a_multipart_stream_comes_back_byte_for_byte(backend: Backend) -> None:
    data = payload(PART_BYTES * 7 // 2)

    assert backend.storage.put_stream("data/s1/dump.sql.zst", chunked(data)) == len(data)

    chunks = list(backend.storage.get_stream("data/s1/dump.sql.zst"))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= READ_CHUNK_BYTES for chunk in chunks)
    assert list(backend.storage.list("data/s1/")) == [("data/s1/dump.sql.zst", len(data))]


@pytest.mark.parametrize("size_bytes", [1, PART_BYTES - 1, PART_BYTES, 2 * PART_BYTES],
                         ids=["one-byte", "part-minus-one", "one-part", "two-parts"])
def test_streams_at_part_boundaries_round_trip(backend: Backend, size_bytes: int) -> None:
    data = payload(size_bytes, seed=size_bytes)

    assert backend.storage.put_stream("data/s1/dump", chunked(data)) == size_bytes

    assert read(backend.storage, "data/s1/dump") == data


def test_an_empty_stream_stores_an_empty_object(backend: Backend) -> None:
    assert backend.storage.put_stream("snapshots/empty.json", iter([])) == 0

    assert read(backend.storage, "snapshots/empty.json") == b""
    assert list(backend.storage.list("snapshots/")) == [("snapshots/empty.json", 0)]


def test_writing_a_key_again_replaces_it(backend: Backend) -> None:
    backend.storage.put_stream("config.json", [b'{"version": 1}'])
    backend.storage.put_stream("config.json", [b'{"version": 2}'])

    assert read(backend.storage, "config.json") == b'{"version": 2}'


def test_list_yields_keys_under_a_prefix_with_their_sizes(backend: Backend) -> None:
    storage = backend.storage
    storage.put_stream("snapshots/a.json", [b"aa"])
    storage.put_stream("snapshots/b.json", [b"bbb"])
    storage.put_stream("data/a/dump", [b"d" * 10])

    assert sorted(storage.list("snapshots/")) == [("snapshots/a.json", 2),
                                                  ("snapshots/b.json", 3)]
    assert sorted(storage.list("snapshots/a")) == [("snapshots/a.json", 2)]
    assert sorted(storage.list("")) == [("data/a/dump", 10), ("snapshots/a.json", 2),
                                        ("snapshots/b.json", 3)]
    assert list(storage.list("locks/")) == []


def test_delete_removes_a_key_and_is_idempotent(backend: Backend) -> None:
    backend.storage.put_stream("snapshots/a.json", [b"{}"])

    backend.storage.delete("snapshots/a.json")
    backend.storage.delete("snapshots/a.json")
    backend.storage.delete("snapshots/never-written.json")

    assert list(backend.storage.list("snapshots/")) == []


def test_reading_a_missing_key_raises_not_found_before_iterating(backend: Backend) -> None:
    with pytest.raises(NotFound, match="snapshots/missing.json"):
        backend.storage.get_stream("snapshots/missing.json")


def test_a_range_read_returns_exactly_those_bytes(backend: Backend) -> None:
    data = payload(PART_BYTES * 3 // 2, seed=3)
    backend.storage.put_stream("packs/ab/abcd", chunked(data))

    for offset, length in ((0, 1), (0, len(data)), (PART_BYTES - 5, 10),
                           (len(data) - 7, 7), (12345, 2**20)):
        assert backend.storage.get_range("packs/ab/abcd", offset, length) == \
            data[offset:offset + length]


@pytest.mark.parametrize("offset", [60, 100, 1000], ids=["straddling", "at-end", "past-end"])
def test_a_range_past_the_end_fails_naming_the_object(backend: Backend, offset: int) -> None:
    backend.storage.put_stream("packs/ab/short", [b"x" * 100])

    with pytest.raises(IntegrityError, match="packs/ab/short.*truncated"):
        backend.storage.get_range("packs/ab/short", offset, 50)


def test_a_range_of_a_missing_key_raises_not_found(backend: Backend) -> None:
    with pytest.raises(NotFound, match="packs/ab/missing"):
        backend.storage.get_range("packs/ab/missing", 0, 10)


@pytest.mark.parametrize("size_bytes", [100, PART_BYTES * 3 // 2],
                         ids=["within-one-part", "after-a-part"])
def test_a_failing_source_leaves_nothing_behind(backend: Backend, size_bytes: int) -> None:
    with pytest.raises(SourceFailed):
        backend.storage.put_stream("data/s1/dump", failing(payload(size_bytes)))

    assert list(backend.storage.list("")) == []
    assert backend.incomplete() == 0


def test_a_failed_rewrite_keeps_the_previous_object(backend: Backend) -> None:
    backend.storage.put_stream("config.json", [b'{"version": 1}'])

    with pytest.raises(SourceFailed):
        backend.storage.put_stream("config.json", failing(payload(PART_BYTES + 1)))

    assert read(backend.storage, "config.json") == b'{"version": 1}'


def test_cleanup_discards_unfinished_writes_under_a_prefix(backend: Backend) -> None:
    backend.leave_incomplete("data/s1/dump")
    backend.leave_incomplete("snapshots/s1.json")
    backend.storage.put_stream("data/s0/dump", [b"finished"])

    assert list(backend.storage.list("")) == [("data/s0/dump", 8)]
    assert backend.storage.cleanup_incomplete("data/") == 1
    assert backend.incomplete() == 1
    assert backend.storage.cleanup_incomplete("") == 1
    assert backend.incomplete() == 0
    assert read(backend.storage, "data/s0/dump") == b"finished"


def test_a_usable_repository_is_writable(backend: Backend) -> None:
    backend.storage.check_writable()


# --- S3 only -----------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_s3_keys_live_under_the_repository_prefix(s3_server: Any, bucket: str) -> None:
    storage = make_s3(s3_server, bucket, prefix="/team//repo/")

    storage.put_stream("/snapshots//s1.json", [b"{}"])

    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["team/repo/snapshots/s1.json"]
    assert list(storage.list("snapshots/")) == [("snapshots/s1.json", 2)]


def test_s3_missing_bucket_is_named(s3_server: Any) -> None:
    storage = make_s3(s3_server, "no-such-bucket-here")

    with pytest.raises(BucketNotFound, match='bucket "no-such-bucket-here" does not exist'):
        storage.check_writable()
    with pytest.raises(BucketNotFound, match="no-such-bucket-here"):
        storage.put_stream("config.json", [b"{}"])
    with pytest.raises(BucketNotFound, match="no-such-bucket-here"):
        storage.put_stream("data/s1/dump", chunked(payload(PART_BYTES + 1)))


def test_s3_rejected_credentials_are_reported_without_the_secret(
        s3_server: Any, bucket: str) -> None:
    wrong_secret = "wrong-secret-0123456789abcdef"
    storage = make_s3(s3_server, bucket, secret_key=wrong_secret)

    with pytest.raises(StorageError, match="rejected the credentials") as raised:
        storage.check_writable()

    message = str(raised.value)
    assert not isinstance(raised.value, BucketNotFound | TransientStorageError)
    assert s3_server.endpoint in message and bucket in message
    for text in (message, str(raised.value.__cause__), repr(storage)):
        assert wrong_secret not in text and s3_server.secret_key not in text


def test_s3_unreachable_endpoint_is_transient_and_named(bucket: str, s3_server: Any) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    storage = make_s3(s3_server, bucket, endpoint=endpoint, max_attempts=1,
                      connect_timeout_s=1.0, read_timeout_s=1.0)

    with pytest.raises(TransientStorageError, match=endpoint):
        storage.check_writable()
    with pytest.raises(TransientStorageError, match=endpoint):
        storage.get_stream("config.json")


def test_s3_part_size_below_the_s3_minimum_is_refused(s3_server: Any, bucket: str) -> None:
    with pytest.raises(ValueError, match="part_bytes"):
        make_s3(s3_server, bucket, part_bytes=MIN_PART_BYTES - 1)


class PartRecorder:
    """Wraps a client's ``upload_part``: counts uploads running at once and bytes done."""

    def __init__(self, upload_part: Callable[..., Any], *, fail_part: int = 0) -> None:
        self._upload_part, self._fail_part = upload_part, fail_part
        self._lock = threading.Lock()
        self.running = self.peak = self.parts = self.uploaded_bytes = 0

    def __call__(self, **request: Any) -> Any:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.1)  # hold the slot, so a reader that ran ahead would show
            if request["PartNumber"] == self._fail_part:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "disk"}},
                                  "UploadPart")
            return self._upload_part(**request)
        finally:
            with self._lock:
                self.running -= 1
                self.parts += 1
                self.uploaded_bytes += len(request["Body"])


def test_s3_uploads_at_most_parts_in_flight_and_reads_no_further_ahead(
        s3_server: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight = 2
    storage = make_s3(s3_server, bucket, parts_in_flight=in_flight)
    recorder = PartRecorder(storage._client.upload_part)
    monkeypatch.setattr(storage._client, "upload_part", recorder)
    data = payload(PART_BYTES * 6)
    read_ahead_bytes: list[int] = []

    def source() -> Iterator[bytes]:
        read_bytes = 0
        for chunk in chunked(data):
            read_bytes += len(chunk)
            read_ahead_bytes.append(read_bytes - recorder.uploaded_bytes)
            yield chunk

    storage.put_stream("data/s1/dump", source())

    assert recorder.parts == 6
    assert recorder.peak == in_flight
    # What the source has given but S3 has not taken: the parts in flight, the part
    # being filled and the chunk in hand. This is what bounds memory.
    assert max(read_ahead_bytes) <= PART_BYTES * (in_flight + 1) + SOURCE_CHUNK_BYTES
    assert read(storage, "data/s1/dump") == data


def test_s3_a_failed_part_aborts_the_upload_and_stops_reading(
        s3_server: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = make_s3(s3_server, bucket)
    monkeypatch.setattr(storage._client, "upload_part",
                        PartRecorder(storage._client.upload_part, fail_part=2))
    consumed = []

    def source() -> Iterator[bytes]:
        for chunk in chunked(payload(PART_BYTES * 10)):
            consumed.append(len(chunk))
            yield chunk

    with pytest.raises(TransientStorageError, match="InternalError"):
        storage.put_stream("data/s1/dump", source())

    assert sum(consumed) < PART_BYTES * 6
    assert list(storage.list("")) == []
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- local directory only ----------------------------------------------------------


@pytest.mark.parametrize("key", ["../outside", "data/../../outside", "/..", "", "a/./b"])
def test_local_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / PREFIX)

    with pytest.raises(StorageError, match="not a valid path"):
        storage.put_stream(key, [b"x"])

    assert not (tmp_path / "outside").exists()


def test_local_check_writable_creates_a_missing_root(tmp_path: Path) -> None:
    LocalStorage(tmp_path / "new" / PREFIX).check_writable()

    assert (tmp_path / "new" / PREFIX).is_dir()
    assert list((tmp_path / "new" / PREFIX).iterdir()) == []


def test_local_unwritable_root_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    root = tmp_path / "a-file" / PREFIX

    with pytest.raises(StorageError, match=re.escape(f"repository directory {root} is not")):
        LocalStorage(root).check_writable()
