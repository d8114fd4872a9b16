"""How a format 3 index is held in memory, measured (issue 13): index files of N chunks
(default 100,000, written as backups write them: files of 4,096 entries over packs of
~16 MiB) in a local repository, then loaded as a backup loads them.

Prints the compact array's bytes (48 per chunk), Python's heap while loading (peak) and
after (tracemalloc), the process's RSS growth, load time, and lookups per second. No
servers; a report, not a test.

    python -m benchmarks.bench_index                    # 100,000 chunks
    python -m benchmarks.bench_index --chunks 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from workers.repository.index import FILE_ENTRIES, ChunkIndex, write_index
from workers.storage.local import LocalStorage
from workflows.packs import Location

MIB = 2**20
#: Chunks per pack: 16 MiB packs of ~1.25 MiB chunks stored at ~0.4 of their size.
CHUNKS_PER_PACK = 30
AVG_STORED_BYTES = 500_000


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_files(storage: LocalStorage, chunks: int) -> None:
    entries = []
    pack = os.urandom(16)
    for n in range(chunks):
        if n % CHUNKS_PER_PACK == 0:
            pack = os.urandom(16)
        offset = (n % CHUNKS_PER_PACK) * AVG_STORED_BYTES
        entries.append((os.urandom(32), Location(pack, offset, AVG_STORED_BYTES, 2**20)))
        if len(entries) == FILE_ENTRIES:
            write_index(storage, None, os.urandom(16), entries)
            entries = []
    if entries:
        write_index(storage, None, os.urandom(16), entries)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_index",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stashq-index-") as root:
        storage = LocalStorage(Path(root))
        write_files(storage, args.chunks)
        on_disk = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
        rss_before = rss_kib()
        tracemalloc.start()
        started = time.perf_counter()
        index = ChunkIndex.load(storage, None)
        load_s = time.perf_counter() - started
        heap, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = rss_kib()
        probes = [os.urandom(32) for _ in range(20_000)]
        started = time.perf_counter()
        found = sum(index.lookup(p) is not None for p in probes)
        lookups = len(probes) / (time.perf_counter() - started)
    print(f"{len(index):,} chunks in {on_disk / MIB:.1f} MiB of index files; loaded in "
          f"{load_s:.2f} s")
    print(f"compact array {index.memory_bytes / MIB:.2f} MiB "
          f"({index.memory_bytes / len(index):.1f} bytes/chunk); Python heap after load "
          f"{heap / MIB:.2f} MiB, peak while loading {peak / MIB:.2f} MiB; "
          f"RSS grew {(rss_after - rss_before) / 1024:.1f} MiB")
    print(f"{lookups:,.0f} lookups/s (misses; {found} found)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
