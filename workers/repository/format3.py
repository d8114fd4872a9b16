"""Format 3 as the Repository object sees it: write and read a stream, its size.

The Repository object dispatches here when ``config.json`` says format 3, so steps
call the same ``write_stream`` / ``read_stream`` for every format. The one hard thing
kept here is the index's lifetime: a backup loads it once per snapshot (all of it: any
known chunk may be reused), a restore loads only the entries of the stream it reads,
first of its chunk list, then of its chunks, so a restore's memory follows the
snapshot and not the repository.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import workers.repository.packs as packs  # PACK_BYTES read at each use: tests shrink it
from workers.repository.check import CheckReport
from workers.repository.chunks import ChunkCodec
from workers.repository.dedup import (
    ChunkReader,
    ChunkWriter,
    list_chunk_ids,
    read_chunked,
    read_list,
    write_chunked,
)
from workers.repository.dedup_check import check_format3
from workers.repository.dedup_prune import LeaseCheck, prune_format3
from workers.repository.index import ChunkIndex
from workers.repository.packs import PackWriter
from workers.repository.streams import Cipher, Report
from workers.storage.base import Storage
from workflows.errors import IntegrityError
from workflows.packs import INDEX_DIR, PACKS_DIR, Chunker, writer_dir
from workflows.snapshots import Stream


@dataclass
class Format3:
    """One format 3 repository's streams (shared by a snapshot's parallel streams)."""

    storage: Storage
    cipher: Cipher
    chunker: Chunker
    _codecs: dict[int, ChunkCodec] = field(default_factory=dict)
    _index: tuple[str, ChunkIndex] | None = None  #: the snapshot it was loaded for
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def codec(self, level: int = 1) -> ChunkCodec:
        with self._lock:
            if level not in self._codecs:
                self._codecs[level] = ChunkCodec.of(self.chunker, self.cipher, level)
            return self._codecs[level]

    def index_for(self, snapshot_id: str) -> ChunkIndex:
        """The whole index, loaded once per snapshot written (what it may dedupe with)."""
        with self._lock:
            if self._index is None or self._index[0] != snapshot_id:
                self._index = (snapshot_id, ChunkIndex.load(self.storage, self.cipher))
            return self._index[1]

    def write_stream(self, snapshot_id: str, name: str, raw: Iterable[bytes], *, level: int,
                     threads: int, report: Report | None,
                     check_end: Report | None) -> Stream:
        codec = self.codec(level)
        writer = ChunkWriter(self.storage, self.cipher, codec, self.index_for(snapshot_id),
                             PackWriter(self.storage, snapshot_id, codec.cipher,
                                        packs.PACK_BYTES))
        return write_chunked(writer, name, raw, threads=threads, report=report,
                             check_end=check_end)

    def read_stream(self, snapshot_id: str, stream: Stream,
                    report: Report | None = None) -> Iterator[bytes]:
        what = f'snapshot "{snapshot_id}" stream {stream.name}'
        codec = self.codec()
        try:
            lists = ChunkReader(self.storage, codec, ChunkIndex.load(
                self.storage, self.cipher, wanted=set(list_chunk_ids(stream, what))))
            ids = read_list(lists, stream, what)
            reader = ChunkReader(self.storage, codec, ChunkIndex.load(
                self.storage, self.cipher, wanted=set(ids)))
        except IntegrityError as e:
            raise IntegrityError(f"{what}: {e}" if what not in str(e) else str(e)) from e
        return read_chunked(reader, snapshot_id, stream, ids, report)

    def discard_unfinished(self, snapshot_id: str) -> None:
        """Abort the pack uploads a killed attempt at ``snapshot_id`` left open."""
        self.storage.cleanup_incomplete(writer_dir(snapshot_id))

    def check(self, *, read_data: bool) -> CheckReport:
        return check_format3(self.storage, self.cipher, self.codec(), read_data=read_data)

    def prune(self, check: LeaseCheck) -> int:
        """Under the exclusive lock: mark and sweep (``dedup_prune``)."""
        with self._lock:
            self._index = None  # packs move: a later write loads the index again
        return prune_format3(self.storage, self.cipher, self.codec(), check)

    def stored_bytes(self) -> int:
        """Bytes of every pack and index file: what the repository's data costs."""
        return sum(size for prefix in (PACKS_DIR, INDEX_DIR)
                   for _, size in self.storage.list(prefix))
