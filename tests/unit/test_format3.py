"""Repository format 3 in a directory, through the Repository object: what a user
relies on. A repeat backup stores almost nothing; an insertion stores little; what is
read back is what was written, or an error naming the bad object (pack, index, chunk)
before a byte of it is released; a killed backup leaves no snapshot and garbage that
prune removes; a prune killed anywhere leaves a repository that checks clean and
restores every kept snapshot."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.repository import Repository, packs
from workers.repository.chunks import ChunkCodec
from workers.storage.local import LocalStorage
from workers.streaming import StreamStats
from workflows.errors import DumpFailed, IntegrityError
from workflows.packs import INDEX_DIR, PACKS_DIR, Chunker, split_ids, writer_dir
from workflows.snapshots import CONFIG_KEY, Snapshot, manifest_key

PASSWORD = "pässword"
#: Small chunks and packs, so a few MiB make many of each.
SMALL = Chunker(min_bytes=4096, avg_bytes=16384, max_bytes=65536)
PACK_BYTES = 256 * 1024


def dump(rows: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"INSERT INTO t VALUES (%d,'%s');\n" % (i, rng.randbytes(24).hex().encode())
                    for i in range(rows))


RAW = dump(40_000)  # ~2.8 MiB


@pytest.fixture(autouse=True)
def small_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packs, "PACK_BYTES", PACK_BYTES)


def open_repo(root: Path, password: str | None = None) -> Repository:
    repo = Repository(LocalStorage(root), "repo", password)
    if repo.config is None:
        repo.ensure_config(contextlib.nullcontext)
        config = json.loads((root / CONFIG_KEY).read_text())
        config["chunker"] = SMALL.model_dump(by_alias=True)
        (root / CONFIG_KEY).write_text(json.dumps(config))
        repo = Repository(LocalStorage(root), "repo", password)
    return repo


def pieces(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def backup(repo: Repository, snapshot_id: str, data: bytes = RAW, **kw: Any) -> Snapshot:
    stream = repo.write_stream(snapshot_id, "dump.sql.zst", pieces(data), level=1, **kw)
    now = datetime.now(UTC)
    snapshot = Snapshot(id=snapshot_id, session=snapshot_id, repository="repo",
                        engine="mariadb", server_version="10.11", target="db",
                        databases=("secret_shop",), streams=(stream,), started_at=now,
                        finished_at=now)
    repo.commit(snapshot)
    return snapshot


def restored(repo: Repository, snapshot_id: str) -> bytes:
    snapshot = repo.resolve_snapshot(snapshot_id)
    return b"".join(b"".join(repo.read_stream(snapshot, s)) for s in snapshot.streams)


def stored(root: Path) -> int:
    return sum(p.stat().st_size for d in (PACKS_DIR, INDEX_DIR)
               for p in (root / d).rglob("*") if p.is_file())


def files(root: Path, directory: str) -> list[Path]:
    return sorted(p for p in (root / directory).rglob("*") if p.is_file())


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("password", [None, PASSWORD], ids=["plain", "encrypted"])
def test_a_repeat_backup_stores_almost_nothing_and_both_restore(tmp_path: Path,
                                                               password: str | None) -> None:
    repo = open_repo(tmp_path, password)
    first = backup(repo, "s1")
    after_first = stored(tmp_path)
    second = backup(repo, "s2")
    (stream,) = second.streams
    assert repo.format_version == 3
    assert stream.added_bytes is not None and stream.added_bytes < 0.01 * after_first
    assert stored(tmp_path) - after_first < 0.01 * after_first
    assert first.streams[0].chunks is not None and first.streams[0].chunks.count > 50
    assert restored(repo, "s1") == RAW and restored(repo, "s2") == RAW
    report = repo.check(read_data=True)
    assert report.ok and report.format_version == 3 and report.orphans == []


def test_an_insertion_stores_the_chunks_around_it_only(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    changed = RAW[:1_000_000] + b"INSERT INTO t VALUES (-1,'new');\n" + RAW[1_000_000:]
    (stream,) = backup(repo, "s2", changed).streams
    assert stream.added_bytes is not None and stream.added_bytes < 4 * SMALL.max_bytes
    assert restored(repo, "s2") == changed


def test_an_encrypted_repository_holds_no_plaintext_and_ids_reveal_nothing(
        tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    snapshot = backup(repo, "s1")
    at_rest = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
                       and p.name != CONFIG_KEY)
    assert b"INSERT INTO" not in at_rest and b"secret_shop" not in at_rest
    plain_ids = {blake3.blake3(c).digest() for c in ChunkCodec(SMALL).cut([RAW], StreamStats())}
    reader_ids = restored_ids(repo, snapshot)
    assert reader_ids and not plain_ids & set(reader_ids)


def restored_ids(repo: Repository, snapshot: Snapshot) -> list[bytes]:
    from workers.repository.dedup import ChunkReader, read_list
    from workers.repository.index import ChunkIndex

    dedup = repo._dedup()
    assert dedup is not None
    reader = ChunkReader(repo.storage, dedup.codec(), ChunkIndex.load(repo.storage, repo.cipher))
    return read_list(reader, snapshot.streams[0], "test")


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=0, max_size=200_000), st.integers(1, 70_000))
def test_chunk_boundaries_reassemble_whatever_the_reads(data: bytes, read_bytes: int) -> None:
    stats = StreamStats()
    chunks = list(ChunkCodec(SMALL).cut(pieces(data, read_bytes), stats))
    assert b"".join(chunks) == data and stats.raw_bytes == len(data)
    assert all(len(c) <= SMALL.max_bytes for c in chunks)
    assert all(len(c) >= SMALL.min_bytes for c in chunks[:-1])


def test_boundaries_do_not_depend_on_how_the_stream_was_read() -> None:
    codec = ChunkCodec(SMALL)
    assert [len(c) for c in codec.cut(pieces(RAW, 777), StreamStats())] == \
        [len(c) for c in codec.cut([RAW], StreamStats())]


def test_restore_opens_a_chunk_only_when_the_consumer_reaches_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Range reads run ahead holding sealed bytes; opened (decompressed) chunks are not
    piled up ahead of the consumer, which is what keeps a restore's memory small."""
    repo = open_repo(tmp_path, PASSWORD)
    snapshot = backup(repo, "s1")
    opened: list[threading.Thread] = []
    real_open = ChunkCodec.open

    def counting_open(self: ChunkCodec, *args: Any) -> bytes:
        opened.append(threading.current_thread())
        return real_open(self, *args)

    monkeypatch.setattr(ChunkCodec, "open", counting_open)
    chunks = repo.read_stream(snapshot, snapshot.streams[0])  # reads the chunk list now
    before = len(opened)
    first = next(iter(chunks))
    time.sleep(0.5)  # room for a read-ahead thread to open more, if one did
    assert len(opened) - before == 1
    assert opened[-1] is threading.current_thread()
    assert first + b"".join(chunks) == RAW


# --- bad input --------------------------------------------------------------------------


def test_a_corrupt_pack_fails_restore_and_check_names_pack_and_snapshots(
        tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    backup(repo, "s1")
    backup(repo, "s2")
    pack = files(tmp_path, PACKS_DIR)[0]
    flip(pack, 100)
    with pytest.raises(IntegrityError, match=f'chunk [0-9a-f]+ in pack "packs/.*{pack.name}" '
                                             "at byte 0 is corrupt: failed authentication"):
        restored(repo, "s1")
    report = repo.check(read_data=True)
    assert not report.ok
    assert any(pack.name in p and 'snapshot(s) "s1", "s2"' in p for p in report.problems)


def test_a_corrupt_plain_chunk_is_caught_by_its_hash(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    flip(files(tmp_path, PACKS_DIR)[0], 5000)
    with pytest.raises(IntegrityError, match="is corrupt"):
        restored(repo, "s1")


def test_a_missing_pack_is_named_by_restore_and_check(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    pack = files(tmp_path, PACKS_DIR)[-1]
    pack.unlink()
    with pytest.raises(IntegrityError, match=f"pack .*{pack.name}.* is missing"):
        restored(repo, "s1")
    assert any(f"{pack.name}\", which is missing" in p for p in repo.check().problems)


def test_a_truncated_index_is_named_by_restore_and_check(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    index = files(tmp_path, INDEX_DIR)[0]
    index.write_bytes(index.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match=f'index "index/{index.name}" is truncated'):
        restored(repo, "s1")
    assert any(f"index/{index.name}" in p for p in repo.check().problems)


def test_an_index_entry_past_the_end_of_its_pack_is_named(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    pack = files(tmp_path, PACKS_DIR)[-1]
    pack.write_bytes(pack.read_bytes()[:1000])
    problems = repo.check().problems
    assert any(f'past the end of pack "packs/{pack.parent.name}/{pack.name}" (1000 bytes)' in p
               for p in problems)
    with pytest.raises(IntegrityError, match=f"{pack.name}.*truncated"):
        restored(repo, "s1")


def test_a_manifest_naming_an_unknown_chunk_is_named(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    snapshot = backup(repo, "s1")
    (stream,) = snapshot.streams
    assert stream.chunks is not None
    forged = stream.chunks.model_copy(update={"ids": ("ab" * 32,)})
    edited = snapshot.model_copy(update={"streams": (stream.model_copy(
        update={"chunks": forged}),)})
    (tmp_path / manifest_key("s1")).write_bytes(edited.to_json())
    with pytest.raises(IntegrityError, match="chunk abab[0-9a-f]* is in no index"):
        restored(repo, "s1")
    assert any("abab" in p and 'snapshot "s1"' in p for p in repo.check().problems)


# --- failures and prune -----------------------------------------------------------------


def failing(data: bytes) -> Iterator[bytes]:
    yield from pieces(data)
    raise DumpFailed("mariadb-dump exited with status 2")


def test_a_backup_killed_mid_pack_leaves_no_snapshot_and_garbage_prune_removes(
        tmp_path: Path) -> None:
    repo = open_repo(tmp_path, PASSWORD)
    backup(repo, "s1", dump(10_000, seed=1))
    with pytest.raises(DumpFailed):
        repo.write_stream("s2", "dump.sql.zst", failing(RAW), level=1)
    assert [s.id for s in repo.list_snapshots()] == ["s1"]
    assert not list(tmp_path.rglob("*.tmp-*"))  # the open pack's upload was cancelled
    report = repo.check(read_data=True)
    assert report.ok and report.orphans  # the completed packs: garbage, not a problem
    before = stored(tmp_path)
    assert repo.prune(belongs=lambda _: True, forgotten=(), exclusive=True,
                      check=lambda: None) > 0
    assert stored(tmp_path) < before / 2
    clean = repo.check(read_data=True)
    assert clean.ok and clean.orphans == []
    assert restored(repo, "s1") == dump(10_000, seed=1)
    # the failed write's claims were released: the same data is stored for real now
    backup(repo, "s3")
    assert restored(repo, "s3") == RAW


def test_a_refused_stream_end_stores_no_snapshot(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)

    def refuse(_stats: StreamStats) -> None:
        raise DumpFailed("no completion line")

    with pytest.raises(DumpFailed):
        repo.write_stream("s1", "dump.sql.zst", pieces(RAW), level=1, check_end=refuse)
    assert files(tmp_path, INDEX_DIR) == [] and repo.list_snapshots() == []


def forget_and_prune(repo: Repository, ids: Iterable[str]) -> int:
    repo.forget(ids, lambda: None)
    return repo.prune(belongs=lambda _: True, forgotten=ids, exclusive=True,
                      check=lambda: None)


def test_prune_frees_what_forgotten_snapshots_alone_used(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1", dump(20_000, seed=1))
    backup(repo, "s2", dump(20_000, seed=2))
    both = stored(tmp_path)
    forget_and_prune(repo, ["s1"])
    assert stored(tmp_path) < 0.6 * both
    assert restored(repo, "s2") == dump(20_000, seed=2)
    report = repo.check(read_data=True)
    assert report.ok and report.orphans == []


def test_prune_without_the_exclusive_lock_deletes_no_chunk(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    backup(repo, "s1")
    repo.forget(["s1"], lambda: None)
    before = files(tmp_path, PACKS_DIR)
    assert repo.prune(belongs=lambda _: True, forgotten=["s1"], exclusive=False,
                      check=lambda: None) == 0
    assert files(tmp_path, PACKS_DIR) == before


class Killed(Exception):
    """The prune's process died here."""


class Dying(LocalStorage):
    """A directory whose writer dies at its ``left``-th put or delete."""

    def __init__(self, root: Path, left: int) -> None:
        super().__init__(root)
        self.left = left

    def _step(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Killed

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        self._step()
        return super().put_stream(key, chunks)

    def delete(self, key: str) -> None:
        self._step()
        super().delete(key)


def test_a_prune_killed_at_any_point_leaves_a_clean_restorable_repository(
        tmp_path: Path) -> None:
    kept = {"s2": dump(12_000, seed=2), "s3": dump(12_000, seed=2) + dump(3_000, seed=3)}
    template = tmp_path / "template"
    repo = open_repo(template)
    backup(repo, "s1", dump(12_000, seed=1) + dump(6_000, seed=2))
    for snapshot_id, data in kept.items():
        backup(repo, snapshot_id, data)
    repo.forget(["s1"], lambda: None)
    for left in range(1000):
        root = tmp_path / f"kill-{left}"
        shutil.copytree(template, root)
        dying = Repository(Dying(root, left), "repo")
        try:
            dying.prune(belongs=lambda _: True, forgotten=["s1"], exclusive=True,
                        check=lambda: None)
            finished = True
        except Killed:
            finished = False
        survivor = Repository(LocalStorage(root), "repo")
        report = survivor.check(read_data=True)
        assert report.ok, (left, report.problems)
        for snapshot_id, data in kept.items():
            assert restored(survivor, snapshot_id) == data, left
        if finished:
            assert left > 3  # it did get killed at several points first
            assert forget_and_prune(survivor, []) == 0
            assert not [o for o in survivor.check().orphans if o.startswith(PACKS_DIR)]
            return
    pytest.fail("the prune never finished")


def test_two_writers_at_once_store_a_chunk_twice_and_prune_keeps_one(tmp_path: Path) -> None:
    open_repo(tmp_path)
    writers = [Repository(LocalStorage(tmp_path), "repo") for _ in range(2)]
    threads = [threading.Thread(target=backup, args=(w, f"s{i}")) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doubled = stored(tmp_path)
    forget_and_prune(Repository(LocalStorage(tmp_path), "repo"), [])
    assert stored(tmp_path) < 0.6 * doubled
    reader = Repository(LocalStorage(tmp_path), "repo")
    assert restored(reader, "s0") == RAW and restored(reader, "s1") == RAW
    assert reader.check(read_data=True).ok


def test_a_chunk_list_is_whole_ids() -> None:
    assert split_ids(b"\0" * 64) == [b"\0" * 32] * 2


def test_a_retried_backup_discards_only_its_own_unfinished_packs(tmp_path: Path) -> None:
    repo = open_repo(tmp_path)
    mine, theirs = (tmp_path / writer_dir(s) / f"{'0' * 32}.tmp-killed" for s in ("s1", "s2"))
    for path in (mine, theirs):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half a pack")
    repo.discard_unfinished("s1")
    assert not mine.exists() and theirs.exists()
