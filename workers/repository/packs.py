"""Format 3 pack files: sealed chunks back to back, uploaded while they fill.

    pack    = chunk_0 || chunk_1 || ... || trailer || trailer length (u32 BE) || "SQP3"
    trailer = per chunk: id (32) || stored length (u32 BE) || raw length (u32 BE),
              sealed (AES-256-GCM, the pack's key as associated data) if encrypted

A pack is one ``put_stream`` running in a thread, fed through a small queue, so a pack
of tens of MiB is never held whole: memory is the queue plus the backend's parts in
flight. The hard part is failure: a writer whose source fails aborts its open uploads,
so a killed or failed backup leaves at most packs that no index names, which prune
removes; and a pack's entries count only once its upload completed.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from workers.encryption import ChunkCipher
from workers.storage.base import Storage
from workflows.errors import IntegrityError
from workflows.packs import (
    OBJECT_ID_BYTES,
    WRITER_TAG_BYTES,
    Location,
    pack_key,
    writer_tag,
)

#: Bytes a pack is closed at (plus one chunk): "tens of MiB", as kopia's ~20 MiB and
#: restic's 16 MiB; 16 MiB is two S3 parts, few objects per TiB (~65,000).
PACK_BYTES = 16 * 2**20
#: Chunks queued for a pack's upload: a few MiB waiting while a part uploads.
QUEUE_DEPTH = 4
#: Packs uploading at once: the one filling and the one finishing its last parts.
UPLOADS_IN_FLIGHT = 2
MAGIC = b"SQP3"
TAIL = struct.Struct(">I4s")
TRAILER_ENTRY = struct.Struct(">32sII")
#: Seconds between checks that an upload thread is alive while the queue is full.
POLL_S = 0.2

_END = object()


class _Cancelled(Exception):
    """Ends an upload's source: its writer failed."""


def new_object_id() -> bytes:
    return os.urandom(OBJECT_ID_BYTES)


def new_pack_id(writer: str) -> bytes:
    """A pack id in ``writer``'s folder (``workflows.packs.writer_dir``)."""
    return writer_tag(writer) + os.urandom(OBJECT_ID_BYTES - WRITER_TAG_BYTES)


def trailer_bytes(entries: list[tuple[bytes, Location]], cipher: ChunkCipher | None,
                  key: str) -> bytes:
    body = b"".join(TRAILER_ENTRY.pack(c, loc.length, loc.raw_length) for c, loc in entries)
    sealed = body if cipher is None else cipher.seal(body, key.encode())
    return sealed + TAIL.pack(len(sealed), MAGIC)


def read_trailer(storage: Storage, key: str, size_bytes: int,
                 cipher: ChunkCipher | None) -> list[tuple[bytes, int, int]]:
    """A pack's own list of its chunks: (id, stored length, raw length) in order."""
    if size_bytes < TAIL.size:
        raise IntegrityError(f'pack "{key}" has {size_bytes} bytes: no trailer')
    length, magic = TAIL.unpack(storage.get_range(key, size_bytes - TAIL.size, TAIL.size))
    if magic != MAGIC or length > size_bytes - TAIL.size:
        raise IntegrityError(f'pack "{key}" does not end with a format 3 trailer')
    sealed = storage.get_range(key, size_bytes - TAIL.size - length, length)
    try:
        body = sealed if cipher is None else cipher.open(sealed, key.encode())
    except IntegrityError as e:
        raise IntegrityError(f'pack "{key}": its trailer {e}') from e
    if len(body) % TRAILER_ENTRY.size:
        raise IntegrityError(f'pack "{key}": its trailer is not whole entries')
    return list(TRAILER_ENTRY.iter_unpack(body))


@dataclass
class _Upload:
    """One pack being uploaded by a thread, fed through a bounded queue."""

    storage: Storage
    pack: bytes
    items: queue.Queue[object] = field(default_factory=lambda: queue.Queue(QUEUE_DEPTH))
    entries: list[tuple[bytes, Location]] = field(default_factory=list)
    size_bytes: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return pack_key(self.pack)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="stashq-pack", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.storage.put_stream(self.key, self._source())
        except BaseException as e:  # re-raised in the writer's thread
            self.error = e

    def _source(self) -> Iterator[bytes]:
        while (item := self.items.get()) is not _END:
            if isinstance(item, _Cancelled):
                raise item
            yield item  # type: ignore[misc]

    def put(self, item: object) -> None:
        assert self.thread is not None
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.items.put(item, timeout=POLL_S)
                return
            except queue.Full:
                if not self.thread.is_alive():
                    raise self.error or IntegrityError(
                        f'the upload of "{self.key}" stopped') from None

    def wait(self) -> None:
        assert self.thread is not None
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclass
class PackWriter:
    """Appends sealed chunks to new packs; ``finish`` returns the entries of every pack
    whose upload completed (all of them, or it raises)."""

    storage: Storage
    writer: str  #: the snapshot id (or "prune"): the packs' folder
    cipher: ChunkCipher | None = None
    pack_bytes: int = PACK_BYTES
    _open: _Upload | None = None
    _closing: list[_Upload] = field(default_factory=list)
    done: list[tuple[bytes, Location]] = field(default_factory=list)

    def add(self, chunk_id: bytes, sealed: bytes, raw_length: int) -> Location:
        upload = self._open
        if upload is None:
            upload = self._open = _Upload(self.storage, new_pack_id(self.writer))
            upload.start()
        location = Location(upload.pack, upload.size_bytes, len(sealed), raw_length)
        upload.put(sealed)
        upload.entries.append((chunk_id, location))
        upload.size_bytes += len(sealed)
        if upload.size_bytes >= self.pack_bytes:
            self._close()
        return location

    def take_done(self) -> list[tuple[bytes, Location]]:
        """Entries of the packs completed since the last call (for an index file)."""
        done, self.done = self.done, []
        return done

    def finish(self) -> list[tuple[bytes, Location]]:
        self._close()
        while self._closing:
            self._complete(self._closing.pop(0))
        return self.take_done()

    def abort(self) -> None:
        """Cancel every upload (nothing of them remains) and wait for their threads."""
        uploads = [u for u in (self._open, *self._closing) if u is not None]
        self._open, self._closing = None, []
        for upload in uploads:
            try:
                upload.put(_Cancelled())
                upload.wait()
            except BaseException:  # noqa: S110 - the writer's own error is what matters
                pass

    def _close(self) -> None:
        upload, self._open = self._open, None
        if upload is None:
            return
        upload.put(trailer_bytes(upload.entries, self.cipher, upload.key))
        upload.put(_END)
        self._closing.append(upload)
        while len(self._closing) >= UPLOADS_IN_FLIGHT:
            self._complete(self._closing.pop(0))

    def _complete(self, upload: _Upload) -> None:
        upload.wait()
        self.done.extend(upload.entries)
