"""Following an xbstream as it passes: in any chunking, it finds the metadata files and
tells a complete stream from one cut short. Streams are made by the real `mbstream -c`."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from workers.xbstream import (
    CHECKPOINTS,
    GALERA_INFO,
    StreamFormatError,
    XbstreamScanner,
    backup_lsn,
    galera_state,
)

CHECKPOINTS_TEXT = "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 50447\nlast_lsn = 54779\n"


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A data directory as mbstream writes it: a big file, small ones, checkpoints last."""
    mbstream = shutil.which("mbstream")
    if mbstream is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("mbstream is not installed (run scripts/install.sh)")
        pytest.skip("mbstream is not installed")
    root = tmp_path_factory.mktemp("datadir")
    (root / "db").mkdir()
    (root / "ibdata1").write_bytes(random.Random(1).randbytes(25 * 2**20 + 3))
    for i in range(50):
        (root / "db" / f"t{i}.ibd").write_bytes(b"x" * (i * 997))
    (root / GALERA_INFO).write_text("708ae662-ea1f-11f1-a559-821d12936abf:8835 0\n")
    (root / CHECKPOINTS).write_text(CHECKPOINTS_TEXT)
    files = ["ibdata1", *(f"db/t{i}.ibd" for i in range(50)), GALERA_INFO, CHECKPOINTS]
    return subprocess.run([mbstream, "-c", *files], cwd=root, capture_output=True,
                          check=True).stdout


#: Bytes fed in small pieces; the rest follows in one piece (Python is slow per byte).
HEAD_BYTES = 300_000


def feed_in_pieces(data: bytes, sizes: list[int]) -> XbstreamScanner:
    scanner, offset, i = XbstreamScanner(), 0, 0
    while offset < min(len(data), HEAD_BYTES):
        size = sizes[i % len(sizes)]
        scanner.feed(data[offset:offset + size])
        offset, i = offset + size, i + 1
    scanner.feed(data[offset:])
    return scanner


@pytest.mark.parametrize("sizes", [[2**20], [1, 2, 3, 5, 8, 13, 4096], [2**20 - 1], [65536, 7]])
def test_any_chunking_sees_every_chunk_and_the_metadata(stream: bytes, sizes: list[int]) -> None:
    whole = XbstreamScanner()
    whole.feed(stream)
    pieces = feed_in_pieces(stream, sizes)
    assert pieces.chunks == whole.chunks > 100 and pieces.files == whole.files
    assert whole.complete() is None
    assert galera_state(whole.text(GALERA_INFO) or "") == (
        "708ae662-ea1f-11f1-a559-821d12936abf", 8835)
    assert backup_lsn(whole.text(CHECKPOINTS) or "") == 54779


def test_a_stream_cut_short_says_where(stream: bytes) -> None:
    inside = XbstreamScanner()
    inside.feed(stream[:-3])
    assert inside.complete() == f"it ends inside chunk {inside.chunks + 1}"
    boundary = stream.rindex(b"XBSTCK01", 0, stream.rindex(b"XBSTCK01"))  # before the last 2
    early = XbstreamScanner()
    early.feed(stream[:stream.rindex(b"XBSTCK01", 0, boundary)])
    assert early.at_boundary
    assert early.complete() == f"it ends after {early.chunks} chunks without {CHECKPOINTS}"


def test_garbage_is_not_an_xbstream() -> None:
    with pytest.raises(StreamFormatError, match="no chunk magic"):
        XbstreamScanner().feed(b"-- MariaDB dump 10.19\n" * 10)


def test_unknown_chunk_types_stop_the_scan_without_a_verdict() -> None:
    sparse = b"XBSTCK01\x00S\x03\x00\x00\x00abc" + b"\x00" * 40
    scanner = XbstreamScanner()
    scanner.feed(sparse)
    assert scanner.stopped and scanner.complete() is None


@pytest.mark.parametrize(("text", "state"), [
    ("708ae662-ea1f-11f1-a559-821d12936abf:-1 0\n", ("708ae662-ea1f-11f1-a559-821d12936abf", -1)),
    ("", None), ("garbage", None), ("uuid:notanumber", None),
])
def test_galera_state_parsing(text: str, state: tuple[str, int] | None) -> None:
    assert galera_state(text) == state


def test_lsn_falls_back_to_to_lsn() -> None:
    assert backup_lsn("to_lsn = 12\n") == 12 and backup_lsn("") is None


def test_kept_files_are_cut_at_the_limit(stream: bytes) -> None:
    scanner = XbstreamScanner(keep=frozenset({"ibdata1"}))
    scanner.feed(stream)
    assert len(scanner.files["ibdata1"]) == 64 * 2**10
