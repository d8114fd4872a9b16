"""The byte pipelines of a repository: one way to write a stream, one way to read it back.

Write: compress (zstd), encrypt (if the repository is), hash and count the stored bytes,
store. Read: fetch, authenticate and decrypt, decompress, and check size and sha256 of
the stored bytes before the stream ends. Only ``Repository`` calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from workers.encryption import RepositoryCipher
from workers.storage.base import Storage
from workers.streaming import (
    ZSTD_THREADS,
    StreamStats,
    compress,
    count_stored,
    decompress,
    prefetch,
    with_progress,
)
from workflows.errors import IntegrityError
from workflows.snapshots import Stream

Report = Callable[[StreamStats], None]
#: What a repository is read and written with: None for an unencrypted one.
Cipher = RepositoryCipher | None


def write_stream(storage: Storage, cipher: Cipher, key: str, name: str, raw: Iterable[bytes], *,
                 level: int, threads: int = ZSTD_THREADS, report: Report | None = None,
                 check_end: Report | None = None) -> Stream:
    """Compress, encrypt (if ``cipher``), hash and store ``raw`` under ``key``. The
    sha256 and size are of the stored bytes.

    ``raw`` is read ahead in a thread; ``threads`` are zstd's (see ``compress``).
    ``check_end(stats)`` runs after the last chunk and before the object is completed:
    raising there (a truncated dump, say) aborts the upload, so nothing is stored.
    """
    stats = StreamStats()
    chunks: Iterable[bytes] = compress(prefetch(raw), stats, level, threads)
    if check_end is not None:
        chunks = _then(chunks, lambda: check_end(stats))
    if cipher is not None:
        chunks = cipher.encrypt(chunks, key.encode())
    chunks = count_stored(chunks, stats)
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    storage.put_stream(key, chunks)
    return Stream(name=name, key=key, size_bytes=stats.stored_bytes, raw_bytes=stats.raw_bytes,
                  sha256=stats.digest)


def read_stream(storage: Storage, cipher: Cipher, snapshot_id: str, stream: Stream,
                report: Report | None = None) -> Iterator[bytes]:
    """The stream's original bytes.

    Encrypted, each ~1 MiB segment is authenticated before any of it reaches zstd (and
    the consumer), so nothing altered is ever yielded. Unencrypted, zstd's frame checksum
    stops corrupt data as it streams. Either way the size and sha256 of the stored bytes
    are checked after the last chunk, before this iterator ends, so a consumer that stops
    at the error (the SQL client is killed, its input never closed) never sees a clean
    end of a corrupt stream.
    """
    stats = StreamStats()
    stored: Iterable[bytes] = count_stored(storage.get_stream(stream.key), stats)
    if cipher is not None:
        stored = cipher.decrypt(stored, stream.key.encode())
    chunks: Iterable[bytes] = decompress(prefetch(stored), stats)
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    where = f'snapshot "{snapshot_id}" stream {stream.name} is corrupt'
    try:
        yield from chunks
    except IntegrityError as e:
        raise IntegrityError(f"{where}: {e}") from e
    if stats.stored_bytes != stream.size_bytes or stats.digest != stream.sha256:
        raise IntegrityError(f"{where}: expected {stream.size_bytes} bytes with sha256 "
                             f"{stream.sha256[:16]}…, read {stats.stored_bytes} bytes with "
                             f"{stats.digest[:16]}…")


def _then(chunks: Iterable[bytes], finish: Callable[[], None]) -> Iterator[bytes]:
    yield from chunks
    finish()


def read_all(storage: Storage, key: str) -> bytes:
    """Read a small object (a manifest or config) whole."""
    return b"".join(storage.get_stream(key))


def write_small(storage: Storage, cipher: Cipher, key: str, data: bytes) -> None:
    """Store a small object (a manifest), encrypted if the repository is."""
    storage.put_stream(key, [data] if cipher is None else cipher.encrypt([data], key.encode()))


def read_small(storage: Storage, cipher: Cipher, key: str) -> bytes:
    """A small object whole, authenticated and decrypted if the repository is encrypted."""
    data = read_all(storage, key)
    return data if cipher is None else b"".join(cipher.decrypt([data], key.encode()))
