"""Archived binlog segments in a repository: one manifest and one data object each.

    <prefix>/binlogs/<source>/segments/<seq>.json      the segment (BinlogSegment), last
    <prefix>/binlogs/<source>/data/<seq>-<file>.zst    its bytes: zstd (and encrypted)

``<seq>`` is ten digits, so listing order is archive order. As with snapshots, a
segment exists exactly when its manifest does, and the manifest is written after its
data: a worker killed between the two leaves data that the next run of the same
sequence number overwrites, never a segment that is half there or there twice. The
data of a segment is a valid binlog file on its own (magic, Format_description event,
then its events), so ``mariadb-binlog`` reads it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from workers.repository.streams import Cipher, read_small, read_stream, write_small, write_stream
from workers.storage.base import Storage
from workflows.binlogs import BinlogSegment
from workflows.errors import IntegrityError
from workflows.snapshots import Stream

BINLOGS_DIR = "binlogs/"
SEQ_DIGITS = 10


def source_dir(source: str) -> str:
    return f"{BINLOGS_DIR}{source}/"


def manifest_key(source: str, seq: int) -> str:
    return f"{source_dir(source)}segments/{seq:0{SEQ_DIGITS}d}.json"


def data_key(source: str, seq: int, file: str) -> str:
    return f"{source_dir(source)}data/{seq:0{SEQ_DIGITS}d}-{file}.zst"


def segment_numbers(storage: Storage, source: str) -> list[int]:
    """Sequence numbers of the source's segments, in order."""
    prefix = f"{source_dir(source)}segments/"
    numbers = []
    for key, _ in storage.list(prefix):
        name = key[len(prefix):]
        if name.endswith(".json") and name[:-len(".json")].isdigit():
            numbers.append(int(name[:-len(".json")]))
    return sorted(numbers)


def load_segment(storage: Storage, cipher: Cipher, source: str, seq: int) -> BinlogSegment:
    """A segment's manifest; ``NotFound`` if there is none, ``IntegrityError`` if corrupt."""
    where = f'binlog segment {seq} of "{source}"'
    try:
        return BinlogSegment.from_json(read_small(storage, cipher, manifest_key(source, seq)))
    except IntegrityError as e:
        raise IntegrityError(f"{where} is corrupt: {e}") from e
    except ValueError as e:
        raise IntegrityError(f"{where} is unreadable: {e}") from e


def write_segment(storage: Storage, cipher: Cipher, segment: BinlogSegment,
                  raw: Iterable[bytes] | None, *, level: int,
                  before_manifest: Callable[[], object] = lambda: None) -> BinlogSegment:
    """Store ``raw`` (if any), then the manifest: from then on the segment exists.
    ``before_manifest`` runs in between (fault tests pause there)."""
    if raw is not None:
        key = data_key(segment.source, segment.seq, segment.file)
        storage.cleanup_incomplete(key)
        stream = write_stream(storage, cipher, key, key.rpartition("/")[2], raw, level=level,
                              threads=0)
        segment = segment.model_copy(update={"stream": stream})
    before_manifest()
    write_small(storage, cipher, manifest_key(segment.source, segment.seq), segment.to_json())
    return segment


def read_segment(storage: Storage, cipher: Cipher, segment: BinlogSegment) -> Iterator[bytes]:
    """The segment's binlog bytes, verified as a snapshot's stream is."""
    if segment.stream is None:
        return iter(())
    return read_stream(storage, cipher, f"{segment.source} binlogs", segment.stream)


def delete_segment(storage: Storage, segment: BinlogSegment) -> None:
    """Manifest first (it is no longer listed), then the data."""
    storage.delete(manifest_key(segment.source, segment.seq))
    if segment.stream is not None:
        storage.delete(segment.stream.key)


def sources(storage: Storage) -> list[str]:
    """The sources that have archived binlogs."""
    names = {key[len(BINLOGS_DIR):].partition("/")[0] for key, _ in storage.list(BINLOGS_DIR)}
    return sorted(name for name in names if name)


def stored(stream: Stream | None) -> int:
    return 0 if stream is None else stream.size_bytes
