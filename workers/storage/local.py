"""A repository in a local directory (a mounted volume, NFS, or a test's tmp dir).

The hard thing is atomicity: a reader must never see a half-written stream. Each
``put_stream`` writes ``<name>.tmp-<random>`` beside its target, fsyncs it and renames
it over the target in one ``os.replace``; a failed write removes its temp file, and
``cleanup_incomplete`` removes those a killed process left behind. Keys are checked so
none can name a path outside the root.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from workers.storage.base import READ_CHUNK_BYTES
from workflows.errors import IntegrityError, NotFound, StorageError, TransientStorageError

TMP_MARKER = ".tmp-"  #: between a file's name and the random suffix of its temp file
#: errnos a retry may cure: a busy or timed-out network mount, an NFS handle gone stale
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE}


class LocalStorage:
    """A repository whose keys are paths below ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        """The file for ``key``; refuses keys that leave the root or look like temp files."""
        names = [name for name in key.split("/") if name]
        if not names or any(n in (".", "..") or "\\" in n or "\0" in n for n in names):
            raise StorageError(f'key "{key}" is not a valid path below {self.root}')
        if TMP_MARKER in names[-1]:
            raise StorageError(f'key "{key}" contains "{TMP_MARKER}", reserved for temp files')
        return self.root.joinpath(*names)

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate ``OSError`` from file operations into ``StorageError``."""
        try:
            yield
        except OSError as e:
            raise self._error(action, key, e) from e

    def _error(self, action: str, key: str, e: OSError) -> StorageError:
        message = f'cannot {action} "{key}" in {self.root}: {e.strerror or e}'
        kind = TransientStorageError if e.errno in _TRANSIENT_ERRNOS else StorageError
        return kind(message)

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write a temp file beside the target, fsync it, rename it over the target."""
        path = self._path(key)
        temp = path.with_name(f"{path.name}{TMP_MARKER}{secrets.token_hex(8)}")
        with self._errors("write", key):
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(temp, "xb")  # noqa: SIM115 - closed below, before the rename
        try:
            with file:
                size = self._write(file, chunks, key)
                with self._errors("write", key):
                    file.flush()
                    os.fsync(file.fileno())
            with self._errors("write", key):
                os.replace(temp, path)
                _fsync_dir(path.parent)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return size

    def _write(self, file: BinaryIO, chunks: Iterable[bytes], key: str) -> int:
        """Copy ``chunks`` into ``file``; the source's own errors pass through untranslated."""
        size = 0
        for chunk in chunks:
            with self._errors("write", key):
                file.write(chunk)
            size += len(chunk)
        return size

    def get_stream(self, key: str) -> Iterator[bytes]:
        """Open the file now (so ``NotFound`` raises here) and stream it."""
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by _read
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFound(f'"{key}" does not exist in {self.root}') from e
        except OSError as e:
            raise self._error("read", key, e) from e
        return self._read(file, key)

    def _read(self, file: BinaryIO, key: str) -> Iterator[bytes]:
        with file, self._errors("read", key):
            while chunk := file.read(READ_CHUNK_BYTES):
                yield chunk

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``pread`` of ``length`` bytes at ``offset``; short means the file is truncated."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFound(f'"{key}" does not exist in {self.root}') from e
        except OSError as e:
            raise self._error("read", key, e) from e
        try:
            with self._errors("read", key):
                data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise IntegrityError(f'"{key}" in {self.root} ends at byte {offset + len(data)}, '
                                 f"before {offset + length}: it is truncated")
        return data

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Yield files whose key starts with ``prefix``, in key order, temp files skipped."""
        found = []
        with self._errors("list", prefix):
            for key, path in self._walk(prefix):
                if TMP_MARKER not in path.name:
                    found.append((key, _size_bytes(path)))
        yield from sorted((key, size) for key, size in found if size is not None)

    def _walk(self, prefix: str) -> Iterator[tuple[str, Path]]:
        """Yield ``(key, path)`` of every file whose key starts with ``prefix``.

        The walk starts in the deepest directory the prefix names, not at the root.
        """
        prefix = re.sub("/+", "/", prefix.lstrip("/"))
        directory = prefix.rpartition("/")[0]
        start = self._path(directory) if directory else self.root
        if not start.is_dir():
            return
        for dirpath, _, filenames in os.walk(start, onerror=_raise):
            for name in filenames:
                path = Path(dirpath, name)
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key, path

    def delete(self, key: str) -> None:
        """Remove the file; empty directories stay, as a concurrent writer may need them."""
        with self._errors("delete", key):
            self._path(key).unlink(missing_ok=True)

    def check_writable(self) -> None:
        """Create the root if missing, then prove a file can be written and removed there."""
        probe = self.root / f".stashq-probe{TMP_MARKER}{secrets.token_hex(8)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StorageError(f"repository directory {self.root} is not writable: "
                               f"{e.strerror or e}") from e

    def cleanup_incomplete(self, prefix: str) -> int:
        """Remove temp files under ``prefix``, however recent.

        The caller holds the repository lock (prune, wipe), so none is still being written.
        """
        removed = 0
        with self._errors("clean up", prefix):
            for _, path in self._walk(prefix):
                if TMP_MARKER in path.name:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed


def _size_bytes(path: Path) -> int | None:
    """The file's size, or None if it was deleted since it was listed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _raise(error: OSError) -> None:
    """``os.walk`` skips unreadable directories silently unless told to raise."""
    raise error


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: the directory entry, not just the file, must reach the disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
