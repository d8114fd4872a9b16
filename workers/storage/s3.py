"""The S3 repository backend, and the only module that imports boto3.

A dump is a stream of unknown length, so ``put_stream`` cannot use one PutObject: it
regroups the incoming chunks into fixed-size parts and sends them as a multipart
upload, a few parts at a time, so memory stays near ``part_bytes × (parts_in_flight +
1)`` however long the dump runs. The hard part is failure: whether the source iterator
or S3 fails, the upload is aborted before the error propagates, so no half-written
object and no billed, invisible open upload remains.

botocore exceptions become our error tree in one place, ``s3_errors``; nothing else
in StashQ sees a botocore type. The secret key is handed to botocore and never
appears in a message or a log line.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import boto3
from botocore import exceptions as boto_errors
from botocore.config import Config

from workers.storage.base import READ_CHUNK_BYTES
from workflows.errors import (
    BucketNotFound,
    IntegrityError,
    NotFound,
    StorageError,
    TransientStorageError,
)

logger = logging.getLogger(__name__)

PART_BYTES = 8 * 2**20  #: bytes per multipart part; 10,000 parts of this make 80 GiB
MIN_PART_BYTES = 5 * 2**20  #: bytes; S3 rejects smaller parts except the last
MAX_PARTS = 10_000  #: S3's limit on parts in one multipart upload
PARTS_IN_FLIGHT = 2  #: parts uploading at once; each holds ``part_bytes`` in memory
CONNECT_TIMEOUT_S = 10.0  #: seconds to open a connection before retrying
READ_TIMEOUT_S = 120.0  #: seconds without a byte on an open connection (a slow part)
CLIENT_CACHE_SIZE = 32  #: distinct S3 client configurations kept per process
MAX_ATTEMPTS = 4  #: botocore "standard" retry mode attempts per request, the first included

#: S3 error codes that mean the credentials were refused, and what each means to a user.
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the access key is unknown",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "AccessDenied": "wrong keys, or keys without access to this bucket",
    "403": "wrong keys, or keys without access to this bucket",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


@contextmanager
def s3_errors(where: str, bucket: str, key: str = "") -> Iterator[None]:
    """Translate botocore exceptions raised inside into ``StorageError`` subclasses.

    ``where`` names the endpoint for people; ``key`` is the full object key, if any.
    Our own errors and the caller's exceptions pass through unchanged.
    """
    try:
        yield
    except boto_errors.ClientError as e:
        raise _client_error(e, where, bucket, key) from e
    except (boto_errors.ConnectionError, boto_errors.HTTPClientError) as e:
        raise TransientStorageError(f"S3 at {where} is unreachable or not answering: {e}") from e
    except boto_errors.NoCredentialsError as e:
        raise StorageError(f'no credentials configured for bucket "{bucket}" at {where}') from e
    except boto_errors.BotoCoreError as e:
        raise StorageError(f'S3 request to bucket "{bucket}" at {where} failed: {e}') from e


def _client_error(e: boto_errors.ClientError, where: str, bucket: str,
                  key: str) -> Exception:
    """The error of our tree that says what an S3 error response means to a user."""
    error = e.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    operation = e.operation_name
    if code in _MISSING_BUCKET_CODES or (operation == "HeadBucket" and status == 404):
        return BucketNotFound(f'bucket "{bucket}" does not exist at {where}')
    if code in _CREDENTIAL_CODES or status == 403:
        why = _CREDENTIAL_CODES.get(code, _CREDENTIAL_CODES["403"])
        return StorageError(f'S3 at {where} rejected the credentials for bucket "{bucket}": '
                            f"{why} ({code or status} on {operation})")
    if code in _MISSING_KEY_CODES:
        return NotFound(f'"{key}" does not exist in bucket "{bucket}" at {where}')
    detail = f'{code} {error.get("Message", "")}'.strip()
    message = f'S3 {operation} on bucket "{bucket}" at {where} failed: {detail}'
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientStorageError(message)
    return StorageError(message)


def join_key(*parts: str) -> str:
    """Join key parts with single slashes: no leading, trailing or doubled slash."""
    return re.sub("/+", "/", "/".join(parts)).strip("/")


def _regroup(chunks: Iterable[bytes], part_bytes: int) -> Iterator[bytearray]:
    """Yield the bytes of ``chunks`` in parts of exactly ``part_bytes``, the last shorter.

    An empty stream yields one empty part, so a caller always gets at least one. Each part
    is filled in a buffer allocated once at its final size and handed over as is: no
    growing buffer (which briefly needs twice the memory), no copy.
    """
    buffer, filled, yielded = bytearray(part_bytes), 0, False
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            taken = min(len(view), part_bytes - filled)
            buffer[filled:filled + taken] = view[:taken]
            filled, view = filled + taken, view[taken:]
            if filled == part_bytes:
                yield buffer
                buffer, filled, yielded = bytearray(part_bytes), 0, True
    if filled or not yielded:
        del buffer[filled:]
        yield buffer


def _prepend(box: list[bytearray], rest: Iterator[bytearray]) -> Iterator[bytearray]:
    """``box``'s one item, then ``rest``; the item is popped, so nothing here keeps it
    alive while later parts upload (``chain([first], …)`` would, through its list)."""
    yield box.pop()
    yield from rest


class _PartWindow:
    """At most ``size`` part uploads running at once; remembers the first failure.

    ``enter`` is called before a part is submitted and blocks while the window is full,
    so the reader holds one more part than are uploading, never more.
    """

    def __init__(self, size: int) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self.failure: BaseException | None = None

    def enter(self) -> None:
        self._slots.acquire()
        if self.failure is not None:
            self._slots.release()
            raise self.failure

    def release(self) -> None:
        self._slots.release()

    def leave(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self.failure is None:
            self.failure = future.exception()
        self._slots.release()


@functools.lru_cache(maxsize=CLIENT_CACHE_SIZE)
def _client(endpoint: str | None, region: str, access_key: str, secret_key: str,
            path_style: bool, insecure_tls: bool, connect_timeout_s: float,
            read_timeout_s: float, max_attempts: int, pool: int) -> Any:
    """A client per distinct configuration, kept for the process: creating one loads
    botocore's service model (~0.2 s), which every step of every session would repeat."""
    config = Config(
        region_name=region or None,
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"mode": "standard", "max_attempts": max_attempts},
        s3={"addressing_style": "path" if path_style else "virtual"},
        max_pool_connections=pool,
        # botocore ≥ 1.36 adds CRC checksum headers that many S3-compatible servers
        # reject (boto/boto3#4392); the manifest's sha256 guards integrity instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # An own session: boto3's default session is not thread-safe; clients are.
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint or None, verify=not insecure_tls, config=config,
        aws_access_key_id=access_key or None,  # empty: botocore's default chain (IRSA…)
        aws_secret_access_key=secret_key or None)


class S3Storage:
    """A repository under ``prefix`` in an S3 bucket (AWS or a compatible server)."""

    def __init__(self, *, endpoint: str | None, bucket: str, prefix: str, region: str,
                 access_key: str, secret_key: str, path_style: bool = True,
                 insecure_tls: bool = False, part_bytes: int = PART_BYTES,
                 parts_in_flight: int = PARTS_IN_FLIGHT,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 read_timeout_s: float = READ_TIMEOUT_S,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES}, got {part_bytes}")
        if parts_in_flight < 1:
            raise ValueError(f"parts_in_flight must be at least 1, got {parts_in_flight}")
        self.bucket = bucket
        self.where = endpoint or f"AWS S3 ({region})"
        self._root = f"{join_key(prefix)}/".lstrip("/")  # "" or "<prefix>/"
        self._part_bytes = part_bytes
        self._parts_in_flight = parts_in_flight
        self._client: Any = _client(endpoint, region, access_key, secret_key, path_style,
                                    insecure_tls, connect_timeout_s, read_timeout_s,
                                    max_attempts, max(10, parts_in_flight + 2))

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self._root!r}, where={self.where!r})"

    def _key(self, key: str) -> str:
        if not key.strip("/"):
            raise StorageError(f'an empty key names no object in bucket "{self.bucket}"')
        return join_key(self._root, key)

    def _prefix(self, prefix: str) -> str:
        """The full key prefix to list; unlike a key, it keeps a trailing slash."""
        return re.sub("/+", "/", self._root + prefix.lstrip("/"))

    def _errors(self, key: str = "") -> AbstractContextManager[None]:
        return s3_errors(self.where, self.bucket, key)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Upload ``chunks`` under ``key``: one PutObject if shorter than a part, else multipart."""
        full = self._key(key)
        parts = _regroup(chunks, self._part_bytes)
        first = next(parts)
        if len(first) < self._part_bytes:
            with self._errors(full):
                self._client.put_object(Bucket=self.bucket, Key=full, Body=first)
            return len(first)
        return self._put_multipart(full, _prepend([first], parts))

    def _put_multipart(self, full: str, parts: Iterator[bytearray]) -> int:
        with self._errors(full):
            upload_id = str(self._client.create_multipart_upload(
                Bucket=self.bucket, Key=full)["UploadId"])
        try:
            etags, size = self._upload_parts(full, upload_id, parts)
            with self._errors(full):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id,
                    MultipartUpload={"Parts": etags})
        except BaseException:
            self._abort(full, upload_id)
            raise
        return size

    def _upload_parts(self, full: str, upload_id: str,
                      parts: Iterator[bytearray]) -> tuple[list[dict[str, Any]], int]:
        """Upload ``parts`` with at most ``parts_in_flight`` running; return ETags and size."""
        window = _PartWindow(self._parts_in_flight)
        futures: list[Future[dict[str, Any]]] = []
        size = 0
        pool = ThreadPoolExecutor(self._parts_in_flight, thread_name_prefix="s3-part")
        try:
            for number in itertools.count(1):
                window.enter()  # a slot first: a part waiting for one would be held in memory
                part = next(parts, None)
                if part is None:
                    window.release()
                    break
                if number > MAX_PARTS:
                    raise StorageError(f'"{full}" needs more than {MAX_PARTS} parts of '
                                       f"{self._part_bytes} bytes; raise the part size")
                futures.append(pool.submit(self._upload_part, full, upload_id, number, part))
                futures[-1].add_done_callback(window.leave)
                size += len(part)
                del part  # the pool's reference is the only one left
            return [f.result() for f in futures], size
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _upload_part(self, full: str, upload_id: str, number: int,
                     part: bytearray) -> dict[str, Any]:
        with self._errors(full):
            response = self._client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                                PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _abort(self, full: str, upload_id: str) -> None:
        """Abort an upload; a failure is logged, not raised, to keep the original error."""
        try:
            with self._errors(full):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full,
                                                    UploadId=upload_id)
        except StorageError as e:
            logger.warning("could not abort upload %s of %s: %s (cleanup_incomplete will)",
                           upload_id, full, e)

    def get_stream(self, key: str) -> Iterator[bytes]:
        """Open the object now (so ``NotFound`` raises here) and stream its body."""
        full = self._key(key)
        with self._errors(full):
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
        return self._read_body(full, body)

    def _read_body(self, full: str, body: Any) -> Iterator[bytes]:
        try:
            with self._errors(full):
                yield from body.iter_chunks(READ_CHUNK_BYTES)
        finally:
            body.close()

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """One GetObject with ``Range: bytes=offset-(offset+length-1)``."""
        full = self._key(key)
        if length <= 0:
            return b""
        with self._errors(full):
            try:
                body = self._client.get_object(Bucket=self.bucket, Key=full,
                                               Range=f"bytes={offset}-{offset + length - 1}")
            except boto_errors.ClientError as e:
                if e.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                body = None
            data = b"" if body is None else body["Body"].read()
        if len(data) != length:
            raise IntegrityError(f'"{full}" in bucket "{self.bucket}" at {self.where} ends '
                                 f"before byte {offset + length}: it is truncated")
        return bytes(data)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        full = self._prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(full):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self._root):], int(item["Size"])

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors(full):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def check_writable(self) -> None:
        """HeadBucket: tells a missing bucket and rejected credentials apart cheaply."""
        with self._errors():
            self._client.head_bucket(Bucket=self.bucket)

    def cleanup_incomplete(self, prefix: str) -> int:
        """Abort every open multipart upload under ``prefix``, however recent.

        The caller holds the repository lock (prune, wipe), so none is still being written.
        """
        full = self._prefix(prefix)
        paginator = self._client.get_paginator("list_multipart_uploads")
        aborted = 0
        with self._errors(full):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for upload in page.get("Uploads", []):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

