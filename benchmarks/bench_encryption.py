"""What encryption at rest costs, in-process: the cipher alone, then the real write and
read path (``write_stream`` / ``read_stream`` on a local directory) with and without it.

    python -m benchmarks.bench_encryption              # 256 MiB, 3 runs (~1 min on 2 cores)
    python -m benchmarks.bench_encryption --size-mib 512 --runs 1

Prints MB/s (10^6 bytes per second of the bytes the cipher sees), then the median wall
and CPU time (all threads) of the pipeline each way, plain and encrypted, interleaved.
On a shared 2-core VM wall times vary by ±20 % from run to run; CPU time is the steadier
measure of what encrypting adds.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from workers.encryption import RepositoryCipher
from workers.repository.streams import Cipher, read_stream, write_stream
from workers.storage.local import LocalStorage

#: Bytes per chunk fed in, as the dump client's reads and the storage's reads come.
CHUNK_BYTES = 4 * 2**20


def dump_like_chunks(size_bytes: int) -> Iterator[bytes]:
    """SQL-ish text that zstd makes ~3x smaller, like a real dump (repeated words, random
    numbers and hex); one 4 MiB block, repeated beyond zstd level 1's window."""
    rng = random.Random(7)
    words = ["customer", "order", "shipped", "pending", "EUR", "USD", "paris", "berlin"]
    rows, total = [], 0
    while total < CHUNK_BYTES:
        rows.append(f"({rng.randrange(10**9)},'{rng.choice(words)}','{rng.choice(words)}',"
                    f"{rng.randrange(10**6) / 100},'{rng.randbytes(8).hex()}'),")
        total += len(rows[-1])
    block = ("INSERT INTO t VALUES " + "".join(rows)).encode()[:CHUNK_BYTES]
    for _ in range(size_bytes // CHUNK_BYTES):
        yield block


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cipher_rates(cipher: RepositoryCipher, size_bytes: int) -> tuple[float, float]:
    chunk, count = os.urandom(CHUNK_BYTES), size_bytes // CHUNK_BYTES
    seconds_in = timed(lambda: collections.deque(
        cipher.encrypt((chunk for _ in range(count)), b"data/x"), maxlen=0))
    sealed = list(cipher.encrypt((chunk for _ in range(count)), b"data/x"))
    seconds_out = timed(lambda: collections.deque(cipher.decrypt(sealed, b"data/x"), maxlen=0))
    return size_bytes / seconds_in / 1e6, size_bytes / seconds_out / 1e6


Run = tuple[float, float, float, float, int]  #: write wall, write CPU, read wall, read CPU s; bytes


def pipeline_run(root: Path, cipher: Cipher, size_bytes: int) -> Run:
    storage = LocalStorage(root)
    streams = []
    cpu = cpu_s()
    write_s = timed(lambda: streams.append(write_stream(
        storage, cipher, "data/bench/dump.sql.zst", "dump.sql.zst",
        dump_like_chunks(size_bytes), level=1)))
    write_cpu, cpu = cpu_s() - cpu, cpu_s()
    read_s = timed(lambda: collections.deque(
        read_stream(storage, cipher, "bench", streams[0]), maxlen=0))
    read_cpu = cpu_s() - cpu
    storage.delete("data/bench/dump.sql.zst")
    return write_s, write_cpu, read_s, read_cpu, streams[0].size_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 2**20
    cipher = RepositoryCipher(os.urandom(32))
    rates = [cipher_rates(cipher, size) for _ in range(args.runs)]
    print(f"cipher alone, {args.size_mib} MiB: encrypt "
          f"{statistics.median(r[0] for r in rates):.0f} MB/s, decrypt "
          f"{statistics.median(r[1] for r in rates):.0f} MB/s")
    with tempfile.TemporaryDirectory(prefix="stashq-bench-") as tmp:
        results: dict[str, list[Run]] = {"plain": [], "encrypted": []}
        for run in range(args.runs):  # interleaved, so a neighbour's burst hits both
            order = [("plain", None), ("encrypted", cipher)]
            for name, used in order if run % 2 else order[::-1]:
                results[name].append(pipeline_run(Path(tmp), used, size))
    medians = {name: [statistics.median(r[i] for r in runs) for i in range(4)]
               for name, runs in results.items()}
    for name, m in medians.items():
        print(f"write_stream+read_stream {name:9} {args.size_mib} MiB raw → "
              f"{results[name][0][4] / 2**20:.1f} MiB stored: write {m[0]:.2f} s "
              f"(CPU {m[1]:.2f} s), read {m[2]:.2f} s (CPU {m[3]:.2f} s)")
    plain, sealed = medians["plain"], medians["encrypted"]
    for what, i in (("write", 0), ("read", 2)):
        print(f"encrypting adds to {what}: wall {(sealed[i] / plain[i] - 1) * 100:+.1f} %, "
              f"CPU {sealed[i + 1] - plain[i + 1]:+.2f} s "
              f"({(sealed[i + 1] / plain[i + 1] - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
