"""The one stream path, with and without zstd worker threads (STASHQ_ZSTD_THREADS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from workers.snapshots import read_stream, write_stream
from workers.storage.local import LocalStorage
from workers.streaming import ZSTD_JOB_BYTES


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
