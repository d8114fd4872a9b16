"""Format 3 index: which pack holds each chunk, on disk and in memory.

An index file (``index/<32 hex>``) lists chunk id → pack, offset, length, raw length,
sorted by id, with a count and a SHA-256 so that a truncated or altered file is refused
naming it (and, in an encrypted repository, sealed as manifests are). Each writer adds
its own files; prune replaces them with consolidated ones.

In memory (``ChunkIndex``) the entries are one ``bytearray`` of fixed 48-byte records
(id, pack number, offset, length, raw length) sorted by id and searched by bisection,
plus a small dict of what this process added since; no Python object per chunk, so
100,000 chunks (~125 GiB of stored data) hold ~4.6 MiB. A restore loads only the
entries of the chunks it needs (``wanted``), so its memory follows the snapshot, not
the repository.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from workers.repository.streams import Cipher, read_small, write_small
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound
from workflows.packs import CHUNK_ID_BYTES, INDEX_DIR, Location, index_key, index_of_key

MAGIC = b"SQI3"
HEADER = struct.Struct(">4sI")  #: magic, entry count
#: One entry in a file: chunk id, pack id, offset, length, raw length (60 bytes).
FILE_ENTRY = struct.Struct(">32s16sIII")
#: One entry in memory: chunk id, pack number, offset, length, raw length (48 bytes).
MEMORY_ENTRY = struct.Struct(">32sIIII")
DIGEST_BYTES = 32
#: Entries in one index file a writer writes (~240 KiB; ~5 GiB of stored chunks):
#: a writer holds this many entries in memory at most before it writes a file.
FILE_ENTRIES = 4096
#: Entries added in memory before they are merged into the compact array.
RECENT_ENTRIES = 65_536


def encode_index(entries: Iterable[tuple[bytes, Location]]) -> bytes:
    """An index file's bytes (before sealing): entries sorted by id."""
    ordered = sorted(entries, key=lambda e: (e[0], e[1].pack))
    body = HEADER.pack(MAGIC, len(ordered)) + b"".join(
        FILE_ENTRY.pack(c, loc.pack, loc.offset, loc.length, loc.raw_length)
        for c, loc in ordered)
    return body + hashlib.sha256(body).digest()


def decode_index(data: bytes, key: str) -> list[tuple[bytes, Location]]:
    """An index file's entries; ``IntegrityError`` naming ``key`` if it is not whole."""
    return list(iter_entries(verified_body(data, key)))


def verified_body(data: bytes, key: str) -> bytes:
    """The entries of an index file, checked whole; ``IntegrityError`` naming ``key``."""
    body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if len(data) < HEADER.size + DIGEST_BYTES or hashlib.sha256(body).digest() != digest:
        raise IntegrityError(f'index "{key}" is truncated or corrupt ({len(data)} bytes; '
                             "its checksum does not match)")
    magic, count = HEADER.unpack_from(body)
    if magic != MAGIC or len(body) != HEADER.size + count * FILE_ENTRY.size:
        raise IntegrityError(f'index "{key}" is not a format 3 index of {count} entries')
    return body[HEADER.size:]


def iter_entries(body: bytes, wanted: set[bytes] | None = None
                 ) -> Iterator[tuple[bytes, Location]]:
    for c, p, o, n, r in FILE_ENTRY.iter_unpack(body):
        if wanted is None or c in wanted:
            yield c, Location(p, o, n, r)


def read_index_body(storage: Storage, cipher: Cipher, key: str) -> bytes:
    """An index file's verified entries, still packed (60 bytes each)."""
    try:
        data = read_small(storage, cipher, key)
    except IntegrityError as e:
        raise IntegrityError(f'index "{key}" is corrupt: {e}') from e
    return verified_body(data, key)


def read_index(storage: Storage, cipher: Cipher, key: str) -> list[tuple[bytes, Location]]:
    return list(iter_entries(read_index_body(storage, cipher, key)))


def write_index(storage: Storage, cipher: Cipher, index_id: bytes,
                entries: Iterable[tuple[bytes, Location]]) -> str:
    key = index_key(index_id)
    write_small(storage, cipher, key, encode_index(entries))
    return key


def index_keys(storage: Storage) -> list[str]:
    return [key for key, _ in storage.list(INDEX_DIR) if index_of_key(key) is not None]


@dataclass
class ChunkIndex:
    """Chunk id → location for a repository (or the part of it a restore needs)."""

    _records: bytearray = field(default_factory=bytearray)
    _packs: list[bytes] = field(default_factory=list)
    _pack_numbers: dict[bytes, int] = field(default_factory=dict)
    _recent: dict[bytes, Location | None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, storage: Storage, cipher: Cipher,
             wanted: set[bytes] | None = None) -> ChunkIndex:
        """Every index file merged (only ``wanted`` ids, if given); ``IntegrityError``
        naming an index file that is truncated or corrupt."""
        index = cls()
        bodies = []
        for key in index_keys(storage):
            try:
                bodies.append(read_index_body(storage, cipher, key))
            except NotFound:
                continue  # deleted by a prune since it was listed
        index._records = index._merge(heapq.merge(
            *(iter_entries(body, wanted) for body in bodies), key=lambda e: e[0]))
        return index

    def __len__(self) -> int:
        return len(self._records) // MEMORY_ENTRY.size + len(self._recent)

    @property
    def memory_bytes(self) -> int:
        """Bytes of the compact array (what grows with the repository)."""
        return len(self._records) + len(self._packs) * 16

    def lookup(self, chunk_id: bytes) -> Location | None:
        with self._lock:
            if chunk_id in self._recent:
                return self._recent[chunk_id]
            return self._find(chunk_id)

    def claim(self, chunk_id: bytes) -> bool:
        """True if the caller must store the chunk (no one has it or is storing it);
        then it is recorded as being stored, until ``add`` or ``release``."""
        with self._lock:
            if chunk_id in self._recent or self._find(chunk_id) is not None:
                return False
            self._recent[chunk_id] = None
            return True

    def add(self, entries: Iterable[tuple[bytes, Location]]) -> None:
        with self._lock:
            self._recent.update(entries)
            if len(self._recent) > RECENT_ENTRIES:
                located = sorted((c, loc) for c, loc in self._recent.items() if loc)
                self._records = self._merge(heapq.merge(self._entries(), located,
                                                        key=lambda e: e[0]))
                self._recent = {c: loc for c, loc in self._recent.items() if loc is None}

    def release(self, chunk_ids: Iterable[bytes]) -> None:
        """Forget claims whose chunks were not stored after all (a failed write)."""
        with self._lock:
            for chunk_id in chunk_ids:
                if self._recent.get(chunk_id, 0) is None:
                    del self._recent[chunk_id]

    def _merge(self, entries: Iterable[tuple[bytes, Location]]) -> bytearray:
        out, last = bytearray(), None
        for chunk_id, loc in entries:
            if chunk_id == last:
                continue  # a duplicate: any copy will do
            number = self._pack_numbers.setdefault(loc.pack, len(self._packs))
            if number == len(self._packs):
                self._packs.append(loc.pack)
            out += MEMORY_ENTRY.pack(chunk_id, number, loc.offset, loc.length, loc.raw_length)
            last = chunk_id
        return out

    def _entries(self) -> Iterator[tuple[bytes, Location]]:
        for c, n, o, length, raw in MEMORY_ENTRY.iter_unpack(self._records):
            yield c, Location(self._packs[n], o, length, raw)

    def _find(self, chunk_id: bytes) -> Location | None:
        size, records = MEMORY_ENTRY.size, self._records
        low, high = 0, len(records) // size
        while low < high:
            middle = (low + high) // 2
            at = middle * size
            found = records[at:at + CHUNK_ID_BYTES]
            if found < chunk_id:
                low = middle + 1
            elif found > chunk_id:
                high = middle
            else:
                _, n, o, length, raw = MEMORY_ENTRY.unpack_from(records, at)
                return Location(self._packs[n], o, length, raw)
        return None
