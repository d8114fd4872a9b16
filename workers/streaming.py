"""Bytes in motion: read a child's stdout in large chunks, compress, hash, and back
(encryption, between compressing and hashing, is ``workers.encryption``).

The hard part is keeping every stage busy on two cores without letting memory grow
with the database. Reading runs in its own thread (``prefetch``) with a bounded queue,
so the dump client never waits for compression; zstd compresses with its own worker
threads (``threads=-1``); the hash runs over the compressed bytes. Memory is bounded by
``PREFETCH_DEPTH`` chunks + zstd's window + the uploader's parts, whatever the size.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import zstandard

from workflows.errors import IntegrityError

#: Chunks read ahead of the compressor: enough to ride out a slow upload part.
PREFETCH_DEPTH = 4
#: A bigger pipe means fewer, larger reads (Linux default is 64 KiB).
PIPE_BYTES = 1 * 2**20
#: Bytes of the raw stream's end kept to check the dump's completion line.
TAIL_BYTES = 4096
#: zstd's multithreaded job size. Its default (several MiB × window per thread) cost
#: ~100 MiB at level 3; 2 MiB costs ~30 MiB for the same speed and output size.
ZSTD_JOB_BYTES = 2 * 2**20
#: zstd worker threads of a stream: one per core (-1, see ``available_cpus``), so one
#: stream keeps both cores busy.
ZSTD_THREADS = -1
#: Where a container's CPU limit is (cgroup v2 ``cpu.max``; v1 ``cpu/cpu.cfs_*``).
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Seconds between progress callbacks.
PROGRESS_INTERVAL_S = 1.0

_END = object()
T = TypeVar("T")


@dataclass
class StreamStats:
    """Counters filled while a stream passes; final once the stream is exhausted."""

    raw_bytes: int = 0
    stored_bytes: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    tail: bytes = b""
    started: float = field(default_factory=time.monotonic)

    @property
    def digest(self) -> str:
        return self.sha256.hexdigest()


def enlarge_pipe(stream: IO[bytes]) -> None:
    """Raise a pipe's capacity (best effort: not every fd is a pipe)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def read_chunks(stream: IO[bytes], chunk_bytes: int) -> Iterator[bytes]:
    """Yield full ``chunk_bytes`` chunks (the last may be shorter) until EOF."""
    while chunk := stream.read(chunk_bytes):
        yield chunk


def prefetch(source: Iterable[T], depth: int = PREFETCH_DEPTH) -> Iterator[T]:
    """Run ``source`` in a thread, ``depth`` items ahead; its errors re-raise here."""
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False  # the consumer is gone

    def pump() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, re-raised there
            put(e)

    thread = threading.Thread(target=pump, name="stashq-prefetch", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


@functools.cache
def available_cpus(cgroup: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, lowered to a cgroup CPU quota (a
    Kubernetes CPU limit) if there is one. zstd's own "-1" counts the host's CPUs: 64
    compression threads, and their memory, in a pod limited to 2 CPUs on a 64-core node."""
    cpus = len(os.sched_getaffinity(0))
    for quota_file, period_file in (("cpu.max", None),
                                    ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            words = (cgroup / quota_file).read_text().split()
            period = words[1] if period_file is None else (cgroup / period_file).read_text()
            if words[0] not in ("max", "-1"):
                return min(cpus, max(1, math.ceil(int(words[0]) / int(period))))
    return cpus


def compress(chunks: Iterable[bytes], stats: StreamStats, level: int,
             threads: int = ZSTD_THREADS) -> Iterator[bytes]:
    """zstd-compress ``chunks`` (one frame with a content checksum), counting raw bytes.

    ``threads``: zstd's worker threads; -1 one per usable CPU, 0 none (compress in this
    thread).
    """
    threads = available_cpus() if threads < 0 else threads
    params = zstandard.ZstdCompressionParameters.from_level(
        level, threads=threads, job_size=ZSTD_JOB_BYTES if threads else 0, write_checksum=1)
    compressor = zstandard.ZstdCompressor(compression_params=params)
    cobj = compressor.compressobj()
    for chunk in chunks:
        stats.raw_bytes += len(chunk)
        stats.tail = (stats.tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        if out := cobj.compress(chunk):
            yield out
    if out := cobj.flush():
        yield out


def count_stored(chunks: Iterable[bytes], stats: StreamStats) -> Iterator[bytes]:
    """Pass the bytes as stored (compressed, maybe encrypted) through, counting and hashing."""
    for chunk in chunks:
        stats.stored_bytes += len(chunk)
        stats.sha256.update(chunk)
        yield chunk


def decompress(chunks: Iterable[bytes], stats: StreamStats) -> Iterator[bytes]:
    """Yield ``chunks`` decompressed (zstd verifies its checksum), counting raw bytes."""
    dobj = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    compressed = 0
    for chunk in chunks:
        compressed += len(chunk)
        try:
            out = dobj.decompress(chunk)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"zstd refused the data at compressed byte "
                                 f"{compressed}: {e}") from e
        if out:
            stats.raw_bytes += len(out)
            yield out


def with_progress(chunks: Iterable[bytes], stats: StreamStats,
                  report: Callable[[StreamStats], None],
                  interval_s: float = PROGRESS_INTERVAL_S) -> Iterator[bytes]:
    """Pass chunks through, calling ``report(stats)`` at most every ``interval_s``, and
    once at the end (a stream shorter than the interval is reported too)."""
    last = time.monotonic()
    for chunk in chunks:
        yield chunk
        now = time.monotonic()
        if now - last >= interval_s:
            last = now
            report(stats)
    report(stats)
