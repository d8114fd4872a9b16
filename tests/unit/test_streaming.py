"""The one stream path, with and without zstd worker threads (STASHQ_ZSTD_THREADS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from workers.repository.streams import read_stream, write_stream
from workers.storage.local import LocalStorage
from workers.streaming import ZSTD_JOB_BYTES, available_cpus


@pytest.mark.parametrize("threads", [-1, 0, 1])
def test_a_stream_round_trips_as_one_checksummed_frame(tmp_path: Path, threads: int) -> None:
    # Several zstd jobs' worth of half-compressible text, in uneven chunks.
    raw = [os.urandom(50_000).hex().encode() + b"INSERT INTO t VALUES (1);\n" * 3000
           for _ in range(3 * ZSTD_JOB_BYTES // 175_000)]
    storage = LocalStorage(tmp_path)
    stream = write_stream(storage, None, "data/s/dump.sql.zst", "dump.sql", raw, level=1,
                          threads=threads)
    stored = (tmp_path / "data/s/dump.sql.zst").read_bytes()
    assert stream.raw_bytes == sum(map(len, raw)) > 2 * ZSTD_JOB_BYTES
    assert stream.size_bytes == len(stored) < stream.raw_bytes
    assert zstandard.get_frame_parameters(stored).has_checksum
    assert b"".join(read_stream(storage, None, "s", stream)) == b"".join(raw)


@pytest.mark.parametrize(("files", "limit"), [
    ({}, None),  # no cgroup files: the affinity mask
    ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ({"cpu.max": "150000 100000\n"}, 2),  # v2, a limit of 1.5 CPUs: 2 threads
    ({"cpu.max": "20000 100000\n"}, 1),  # v2, a fifth of a CPU: still 1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
])
def test_one_thread_per_cpu_means_the_cpus_a_container_may_use(
        tmp_path: Path, files: dict[str, str], limit: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    mask = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == (mask if limit is None else min(mask, limit))
