"""The storage protocol every repository backend implements.

Keys are '/'-separated relative paths below the repository's prefix
(``snapshots/<id>.json``, ``data/<id>/dump.sql.zst``); the backend maps them to
objects or files. Streams stay streams: ``put_stream`` consumes an iterator of byte
chunks and never holds more than its documented bound in memory; ``get_stream``
yields chunks; ``get_range`` reads a few MiB from the middle of an object (a chunk of a
repository format 3 pack) without reading the rest. A ``put_stream`` whose source
iterator raises leaves nothing behind under the key (multipart uploads are aborted,
temporary files removed) and re-raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

#: Size of the chunks ``get_stream`` yields, in bytes: a restore holds a few of these and
#: their decompressed output (4 MiB cost ~39 MiB of peak RSS, 1 MiB ~11, measured).
READ_CHUNK_BYTES = 1 * 2**20


class Storage(Protocol):
    """A repository backend. All failures raise ``workflows.errors.StorageError``."""

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenation of ``chunks`` under ``key`` atomically; return bytes stored.

        The object becomes visible only when complete. If ``chunks`` raises, the partial
        object is discarded (no open multipart upload remains) and the error propagates.
        """

    def get_stream(self, key: str) -> Iterator[bytes]:
        """Yield the object's bytes in chunks of at most READ_CHUNK_BYTES.

        Raises ``NotFound`` if the key does not exist.
        """

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """The ``length`` bytes of the object at byte ``offset`` (at most a few MiB: a
        caller reads one chunk or one run of chunks of a pack this way).

        Raises ``NotFound`` if the key does not exist and ``IntegrityError`` if the
        object ends before ``offset + length`` (a truncated pack), naming the key.
        """

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Yield ``(key, size_bytes)`` for every object whose key starts with ``prefix``."""

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def check_writable(self) -> None:
        """Raise a specific ``StorageError`` unless the repository can be written now
        (bucket exists, credentials accepted)."""

    def cleanup_incomplete(self, prefix: str) -> int:
        """Discard unfinished writes (open multipart uploads, temp files) under ``prefix``;
        return how many were discarded."""
