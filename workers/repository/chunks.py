"""Format 3 chunks: cut a stream at content-defined boundaries, name each chunk by its
hash, and seal it (zstd, then AES-256-GCM in an encrypted repository) or open it.

Boundaries come from FastCDC (``pyfastcdc``, the 2020 paper's algorithm in Cython,
which releases the GIL while it scans), so an insertion moves only the chunks around it
and the rest dedupe. A chunk's id is BLAKE3 of its bytes, keyed in an encrypted
repository (and the chunker's gear table seeded from the key too), so neither ids nor
boundaries reveal content. The hard part is trust on the way back: ``open`` returns a
chunk only after it authenticated (encrypted) and its recomputed id matched, so
nothing from an altered chunk reaches a database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import blake3
import zstandard
from pyfastcdc import FastCDC

from workers.encryption import CHUNK_ID_INFO, CHUNKER_SEED_INFO, ChunkCipher
from workers.repository.streams import Cipher
from workers.streaming import TAIL_BYTES, StreamStats
from workflows.errors import IntegrityError
from workflows.packs import Chunker

#: Chunk sizes, bytes. FastCDC's average is ``avg + min`` (its paper, 3.4), so chunks
#: average ~1.25 MiB: near restic's ~1 MiB, small enough that a change in a table
#: rewrites little, large enough that 1 TiB is ~850,000 chunks (48 bytes of index each
#: in memory). Measured on dump text: docs/benchmarks.md, "Deduplication".
MIN_CHUNK_BYTES = 256 * 2**10
AVG_CHUNK_BYTES = 1 * 2**20
MAX_CHUNK_BYTES = 4 * 2**20
DEFAULT_CHUNKER = Chunker(min_bytes=MIN_CHUNK_BYTES, avg_bytes=AVG_CHUNK_BYTES,
                          max_bytes=MAX_CHUNK_BYTES)


@dataclass
class ChunkCodec:
    """Ids, sealing and opening of one repository's chunks; safe to share by threads
    (zstd contexts are per thread)."""

    chunker: Chunker
    level: int = 1
    id_key: bytes | None = None
    cipher: ChunkCipher | None = None
    seed: int = 0
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def of(cls, chunker: Chunker, cipher: Cipher, level: int = 1) -> ChunkCodec:
        if cipher is None:
            return cls(chunker, level)
        # 63 bits: pyfastcdc shifts the seed left by one in a 64-bit integer.
        seed = int.from_bytes(cipher.derive(CHUNKER_SEED_INFO, 8), "big") >> 1
        return cls(chunker, level, cipher.derive(CHUNK_ID_INFO), cipher.chunk_cipher(), seed)

    def chunk_id(self, data: bytes) -> bytes:
        if self.id_key is None:
            return blake3.blake3(data).digest()
        return blake3.blake3(data, key=self.id_key).digest()

    def seal(self, chunk_id: bytes, data: bytes) -> bytes:
        compressed = self._compressor().compress(data)
        return compressed if self.cipher is None else self.cipher.seal(compressed, chunk_id)

    def open(self, chunk_id: bytes, sealed: bytes, raw_length: int) -> bytes:
        """The chunk's bytes; ``IntegrityError`` unless it authenticates, decompresses to
        ``raw_length`` bytes and hashes to ``chunk_id``."""
        compressed = sealed if self.cipher is None else self.cipher.open(sealed, chunk_id)
        try:
            data = self._decompressor().decompress(compressed, max_output_size=raw_length)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"zstd refused it: {e}") from e
        if len(data) != raw_length or self.chunk_id(data) != chunk_id:
            raise IntegrityError(f"its content ({len(data)} bytes) does not hash to its id")
        return data

    def cut(self, raw: Iterable[bytes], stats: StreamStats) -> Iterator[bytes]:
        """``raw`` in content-defined chunks, counting raw bytes and keeping the tail."""
        cdc = FastCDC(self.chunker.avg_bytes, min_size=self.chunker.min_bytes,
                      max_size=self.chunker.max_bytes, seed=self.seed)
        for chunk in cdc.cut_stream(_Reader(iter(raw), stats)):
            yield bytes(chunk.data)

    def _compressor(self) -> zstandard.ZstdCompressor:
        if not hasattr(self._local, "compressor"):
            self._local.compressor = zstandard.ZstdCompressor(level=self.level)
        return self._local.compressor  # type: ignore[no-any-return]

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        if not hasattr(self._local, "decompressor"):
            self._local.decompressor = zstandard.ZstdDecompressor()
        return self._local.decompressor  # type: ignore[no-any-return]


class _Reader:
    """An iterator of byte strings as the ``readinto`` FastCDC reads from."""

    def __init__(self, chunks: Iterator[bytes], stats: StreamStats) -> None:
        self._chunks, self._stats = chunks, stats
        self._pending, self._at = b"", 0

    def readinto(self, buffer: memoryview) -> int:
        while self._at >= len(self._pending):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending, self._at = chunk, 0
            self._stats.raw_bytes += len(chunk)
            self._stats.tail = (self._stats.tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        taken = min(len(buffer), len(self._pending) - self._at)
        buffer[:taken] = self._pending[self._at:self._at + taken]
        self._at += taken
        return taken
