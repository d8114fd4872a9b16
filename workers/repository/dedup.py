"""Format 3 streams: write a stream as deduplicated chunks, read it back chunk by chunk.

Write: the stream is read ahead in a thread, cut (FastCDC), and each chunk hashed;
a chunk the index does not know is compressed and sealed (by a pool of threads, in
order) and appended to a pack; the stream's chunk ids then form its chunk list, stored
the same way; index files follow the packs they describe. Read: the chunk list, then
the chunks, fetched with range reads of their packs (a run of neighbours in one read,
read ahead in a thread), each opened and verified before a byte of it is yielded.

The hard part is what a failure leaves. A write that fails (or whose ``check_end``
refuses the stream) cancels its open pack uploads and writes no index for them, and
releases its claims on chunk ids, so nothing later deduplicates against a chunk that
was never stored; completed packs stay as garbage that no manifest needs and prune
removes.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from workers.repository.chunks import ChunkCodec
from workers.repository.index import FILE_ENTRIES, ChunkIndex, write_index
from workers.repository.packs import PackWriter, new_object_id
from workers.repository.streams import Cipher, Report
from workers.storage.base import Storage
from workers.streaming import (
    PROGRESS_INTERVAL_S,
    StreamStats,
    available_cpus,
    prefetch,
    with_progress,
)
from workflows.errors import IntegrityError, NotFound
from workflows.packs import ChunkList, Location, pack_key, split_ids
from workflows.snapshots import Stream

#: Bytes of neighbouring chunks fetched in one range read at most (S3 GETs per MiB).
READ_RUN_BYTES = 8 * 2**20
#: Range reads fetched ahead of the consumer (each up to READ_RUN_BYTES).
READ_AHEAD = 2
#: Chunks being hashed and sealed at once, per thread of the pool.
IN_FLIGHT_PER_THREAD = 2


@dataclass
class Sealed:
    chunk_id: bytes
    raw_length: int
    sealed: bytes | None  #: None: the index has it already


@dataclass
class ChunkWriter:
    """One stream's write: claims, packs and index files; ``abort`` on any failure."""

    storage: Storage
    cipher: Cipher
    codec: ChunkCodec
    index: ChunkIndex
    packs: PackWriter
    claimed: list[bytes] = field(default_factory=list)
    stored_bytes: int = 0  #: of all its chunks, new or not
    added_bytes: int = 0  #: of new chunks only

    def prepare(self, data: bytes) -> Sealed:
        chunk_id = self.codec.chunk_id(data)
        if not self.index.claim(chunk_id):
            return Sealed(chunk_id, len(data), None)
        return Sealed(chunk_id, len(data), self.codec.seal(chunk_id, data))

    def store(self, item: Sealed) -> None:
        if item.sealed is None:
            known = self.index.lookup(item.chunk_id)
            self.stored_bytes += known.length if known is not None else 0
            return
        self.claimed.append(item.chunk_id)
        self.packs.add(item.chunk_id, item.sealed, item.raw_length)
        self.stored_bytes += len(item.sealed)
        self.added_bytes += len(item.sealed)
        if len(self.packs.done) >= FILE_ENTRIES:
            self.write_index(self.packs.take_done())

    def write_index(self, entries: list[tuple[bytes, Location]]) -> None:
        if entries:
            write_index(self.storage, self.cipher, new_object_id(), entries)
            self.index.add(entries)

    def finish(self) -> None:
        self.write_index(self.packs.finish())

    def abort(self) -> None:
        self.packs.abort()
        self.index.release(self.claimed)


def write_chunked(writer: ChunkWriter, name: str, raw: Iterable[bytes], *, threads: int,
                  report: Report | None = None,
                  check_end: Report | None = None) -> Stream:
    """Store ``raw`` as chunks; the Stream names its chunk list. See the module's doc."""
    stats = StreamStats()
    ids = bytearray()
    last_report = time.monotonic()
    try:
        for item in _sealed(writer, writer.codec.cut(prefetch(raw), stats), threads):
            writer.store(item)
            ids += item.chunk_id
            stats.stored_bytes = writer.added_bytes
            if report is not None and time.monotonic() - last_report >= PROGRESS_INTERVAL_S:
                last_report = time.monotonic()
                report(stats)
        if check_end is not None:
            check_end(stats)
        chunk_list = _store_list(writer, bytes(ids), stats)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    if report is not None:
        report(stats)
    return Stream(name=name, key="", size_bytes=writer.stored_bytes,
                  raw_bytes=stats.raw_bytes, sha256=hashlib.sha256(ids).hexdigest(),
                  chunks=chunk_list, added_bytes=writer.added_bytes)


def _store_list(writer: ChunkWriter, ids: bytes, stats: StreamStats) -> ChunkList:
    """The chunk list, cut and stored as chunks too (it dedupes like any data)."""
    list_ids = []
    for data in writer.codec.cut([ids], StreamStats()):
        item = writer.prepare(data)
        writer.store(item)
        list_ids.append(item.chunk_id.hex())
    stats.stored_bytes = writer.added_bytes
    return ChunkList(ids=tuple(list_ids), count=len(ids) // 32)


def _sealed(writer: ChunkWriter, chunks: Iterable[bytes], threads: int) -> Iterator[Sealed]:
    """``writer.prepare`` of each chunk, by a pool of threads, in order."""
    workers = available_cpus() if threads < 0 else threads
    if workers == 0:
        yield from map(writer.prepare, chunks)
        return
    pending: deque[Future[Sealed]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="stashq-seal") as pool:
        try:
            for data in chunks:
                pending.append(pool.submit(writer.prepare, data))
                if len(pending) >= workers * IN_FLIGHT_PER_THREAD:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            for future in pending:  # a claim made by a cancelled-too-late prepare counts
                if not future.cancelled() and future.exception() is None:
                    writer.claimed.append(future.result().chunk_id)


# --- reading ------------------------------------------------------------------------


@dataclass
class ChunkReader:
    """Reads chunks by id from a repository's packs, through an index."""

    storage: Storage
    codec: ChunkCodec
    index: ChunkIndex

    def locate(self, chunk_id: bytes, what: str) -> Location:
        location = self.index.lookup(chunk_id)
        if location is None:
            raise IntegrityError(f"{what}: chunk {chunk_id.hex()} is in no index "
                                 "(an unknown chunk)")
        return location

    def runs(self, ids: Iterable[bytes], what: str
             ) -> Iterator[list[tuple[bytes, Location]]]:
        """Chunks grouped into runs that one range read fetches (neighbours in a pack)."""
        run: list[tuple[bytes, Location]] = []
        for chunk_id in ids:
            loc = self.locate(chunk_id, what)
            if run and not _extends(run, loc):
                yield run
                run = []
            run.append((chunk_id, loc))
        if run:
            yield run

    def fetch(self, run: list[tuple[bytes, Location]], what: str
              ) -> tuple[list[tuple[bytes, Location]], bytes]:
        """The run and its sealed bytes, in one range read; errors name ``what``
        (snapshot and stream) and the pack."""
        first, last = run[0][1], run[-1][1]
        key = pack_key(first.pack)
        try:
            data = self.storage.get_range(key, first.offset,
                                          last.offset + last.length - first.offset)
        except NotFound as e:
            raise IntegrityError(f'{what}: pack "{key}" is missing ({e})') from e
        except IntegrityError as e:
            raise IntegrityError(f"{what}: {e}") from e
        return run, data

    def open(self, run: list[tuple[bytes, Location]], data: bytes, what: str
             ) -> Iterator[bytes]:
        """The run's chunks one by one, each opened and verified as it is asked for."""
        first = run[0][1]
        key = pack_key(first.pack)
        for chunk_id, loc in run:
            at = loc.offset - first.offset
            try:
                chunk = self.codec.open(chunk_id, data[at:at + loc.length], loc.raw_length)
            except IntegrityError as e:
                raise IntegrityError(f'{what}: chunk {chunk_id.hex()} in pack "{key}" at '
                                     f"byte {loc.offset} is corrupt: {e}") from e
            yield chunk

    def read(self, ids: Iterable[bytes], what: str) -> Iterator[bytes]:
        """The chunks of ``ids`` in order. Range reads run ahead in a thread and hold
        sealed (compressed) bytes; a chunk is opened only when the consumer comes to it,
        so what is held ahead is READ_AHEAD runs of compressed data, not of opened data."""
        fetched = prefetch((self.fetch(r, what) for r in self.runs(ids, what)), READ_AHEAD)
        for run, data in fetched:
            yield from self.open(run, data, what)


def _extends(run: list[tuple[bytes, Location]], loc: Location) -> bool:
    first, last = run[0][1], run[-1][1]
    return (loc.pack == last.pack and loc.offset == last.offset + last.length
            and loc.offset + loc.length - first.offset <= READ_RUN_BYTES)


def list_chunk_ids(stream: Stream, what: str) -> list[bytes]:
    """The ids of the chunks that hold a stream's chunk list, as the manifest names them."""
    if stream.chunks is None:
        raise IntegrityError(f"{what}: no chunk list (not a format 3 stream)")
    try:
        return [bytes.fromhex(h) for h in stream.chunks.ids]
    except ValueError as e:
        raise IntegrityError(f"{what}: its chunk list names a malformed id") from e


def read_list(reader: ChunkReader, stream: Stream, what: str) -> list[bytes]:
    """A stream's chunk ids, from its chunk list, checked against its sha256."""
    list_ids = list_chunk_ids(stream, what)
    assert stream.chunks is not None  # list_chunk_ids said so
    data = b"".join(reader.read(list_ids, f"{what} (its chunk list)"))
    if hashlib.sha256(data).hexdigest() != stream.sha256:
        raise IntegrityError(f"{what}: its chunk list does not match the manifest's sha256")
    ids = split_ids(data)
    if len(ids) != stream.chunks.count:
        raise IntegrityError(f"{what}: its chunk list has {len(ids)} ids, the manifest "
                             f"says {stream.chunks.count}")
    return ids


def read_chunked(reader: ChunkReader, snapshot_id: str, stream: Stream, ids: list[bytes],
                 report: Report | None = None) -> Iterator[bytes]:
    """The stream's bytes (its chunk ``ids``, see ``read_list``), each chunk verified
    before it is yielded, the total checked against the manifest at the end."""
    what = f'snapshot "{snapshot_id}" stream {stream.name}'
    stats = StreamStats()
    chunks: Iterable[bytes] = _counted(reader.read(ids, what), stats)
    if report is not None:
        chunks = with_progress(chunks, stats, report)
    yield from chunks
    if stats.raw_bytes != stream.raw_bytes:
        raise IntegrityError(f"{what}: {stats.raw_bytes} bytes read, the manifest says "
                             f"{stream.raw_bytes}")


def _counted(chunks: Iterable[bytes], stats: StreamStats) -> Iterator[bytes]:
    for chunk in chunks:
        stats.raw_bytes += len(chunk)
        yield chunk
