"""Encryption at rest: Tink's AES-GCM-HKDF streaming AEAD, keyed by the repository password.

Nothing here is a cipher of ours. Streams use Tink's published "AES-GCM-HKDF Streaming
AEAD" wire format (https://developers.google.com/tink/streaming-aead/aes_gcm_hkdf_streaming,
its AES256_GCM_HKDF_1MB parameters), an instance of the STREAM construction of Hoang,
Reyhanitabar, Rogaway and Vizár (CRYPTO 2015), built from ``cryptography``'s AES-GCM and
HKDF; the tests decrypt our objects with Tink itself, and Tink's with this module.

    object     = header || segment_0 || ... || segment_n
    header     = 0x28 (its length, 40) || salt (32 random bytes) || nonce prefix (7 random bytes)
    object key = HKDF-SHA256(repository key, salt, info = associated data), 32 bytes
    segment_i  = AES-256-GCM(object key, nonce = prefix || i as uint32 BE || last 0x00|0x01,
                             plaintext i) = ciphertext || 16-byte tag

The hard part is what decryption may release: each segment is authenticated before a byte
of it is yielded, and whether a segment is the last is part of its nonce, so a stream cut
at a segment boundary fails at its new end, and a reordered, duplicated or dropped
segment fails where it stands. The associated data (the object's repository key) goes
into the per-object key, so an object copied or renamed to another key does not open.

Format 3 repositories (``workers/repository/chunks.py``) derive three keys from the
repository key with HKDF-SHA256 (no salt, distinct ``info``): the BLAKE3 key of chunk
ids, so that an id reveals nothing of the content; the AES-256-GCM key that seals each
chunk (``ChunkCipher``: a random 96-bit nonce per chunk, the chunk id as associated
data, so a chunk moved under another id does not open); and the chunker's seed, so that
chunk boundaries do not reveal content either.

The repository key is 32 random bytes, stored in ``config.json`` wrapped (AES key wrap,
RFC 3394) under a key that scrypt (RFC 7914) derives from the password: the unwrap's
integrity check tells a wrong password at once, and a new password would rewrap one key
instead of re-encrypting every object.
"""

from __future__ import annotations

import base64
import functools
import os
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from workflows.errors import IntegrityError, PrecheckFailed
from workflows.snapshots import STREAM_SCHEME, Encryption, Kdf

# cryptography (~10 MiB resident) is imported where it is used: a process that never
# opens an encrypted repository (the CLI, an unencrypted worker) does not load it here.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The Secret key holding the repository password: the one Stash's restic reads.
PASSWORD_KEY = "RESTIC_PASSWORD"  # noqa: S105 - a key name, not a password
#: scrypt cost, OWASP's N=2^15, r=8, p=3: the CPU of N=2^17 (~0.4 s) in 32 MiB, not 128.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
SCRYPT_SALT_BYTES = 16
#: AES-256 keys: the repository key, the password's wrapping key, each object's key.
KEY_BYTES = 32
#: Ciphertext segment size in bytes (Tink's AES256_GCM_HKDF_1MB); memory per stream is
#: about one segment plus one incoming chunk.
SEGMENT_BYTES = 2**20
NONCE_PREFIX_BYTES = 7
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_BYTES + NONCE_PREFIX_BYTES
#: Segment numbers are 32 bits: 4 PiB per object at 1 MiB segments.
MAX_SEGMENTS = 2**32
#: HKDF ``info`` of the keys a format 3 repository derives from its repository key.
CHUNK_ID_INFO = b"stashq format 3 chunk id"
CHUNK_DATA_INFO = b"stashq format 3 chunk data"
CHUNKER_SEED_INFO = b"stashq format 3 chunker seed"
#: AES-GCM nonce per sealed chunk, random: NIST SP 800-38D allows 2^32 of them per key
#: (4 PiB of ~1 MiB chunks) before a collision becomes more likely than 2^-32.
CHUNK_NONCE_BYTES = 12


class RepositoryCipher:
    """Encrypts and decrypts streams under one repository key.

    ``segment_bytes`` is Tink's ciphertext segment size: repositories use
    ``SEGMENT_BYTES``; tests use tiny segments to try every byte of many segments.
    """

    def __init__(self, key: bytes, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a repository key has {KEY_BYTES} bytes, not {len(key)}")
        if segment_bytes <= HEADER_BYTES + TAG_BYTES:
            raise ValueError(f"a segment of {segment_bytes} bytes holds no plaintext")
        self._key, self._segment_bytes = key, segment_bytes

    def encrypt(self, chunks: Iterable[bytes], associated_data: bytes) -> Iterator[bytes]:
        """The encrypted stream: the header, then one segment per ~1 MiB of ``chunks``."""
        salt, prefix = os.urandom(KEY_BYTES), os.urandom(NONCE_PREFIX_BYTES)
        aead = self._object_aead(salt, associated_data)
        yield bytes([HEADER_BYTES]) + salt + prefix
        size = self._segment_bytes - TAG_BYTES
        for index, (plain, last) in enumerate(_segments(chunks, size - HEADER_BYTES, size)):
            yield aead.encrypt(_nonce(prefix, index, last), plain, None)

    def decrypt(self, chunks: Iterable[bytes], associated_data: bytes) -> Iterator[bytes]:
        """The plaintext, one authenticated segment at a time.

        Raises ``IntegrityError`` at the first segment that does not authenticate, at a
        stream that ends without its final segment, or at a malformed header; nothing
        of that segment or after it is yielded.
        """
        aead, prefix, offset = None, b"", 0
        size = self._segment_bytes
        for index, (piece, last) in enumerate(_segments(chunks, size, size)):
            if aead is None:
                aead, prefix = self._open_header(piece, associated_data)
                piece, offset = piece[HEADER_BYTES:], HEADER_BYTES
            yield _open_segment(aead, prefix, index, piece, last, offset)
            offset += len(piece)

    def derive(self, info: bytes, length: int = KEY_BYTES) -> bytes:
        """A key for one purpose (``info``), derived from the repository key (HKDF-SHA256)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                    info=info).derive(self._key)

    def chunk_cipher(self) -> ChunkCipher:
        """What seals a format 3 repository's chunks."""
        return ChunkCipher(self.derive(CHUNK_DATA_INFO))

    def _open_header(self, piece: bytes, associated_data: bytes) -> tuple[AESGCM, bytes]:
        if len(piece) < HEADER_BYTES + TAG_BYTES:
            raise IntegrityError(f"{len(piece)} bytes are too few for an encrypted stream "
                                 f"(at least {HEADER_BYTES + TAG_BYTES})")
        if piece[0] != HEADER_BYTES:
            raise IntegrityError(f"the header gives its length as {piece[0]}, not "
                                 f"{HEADER_BYTES}: not a {STREAM_SCHEME} stream")
        salt, prefix = piece[1:1 + KEY_BYTES], piece[1 + KEY_BYTES:HEADER_BYTES]
        return self._object_aead(salt, associated_data), prefix

    def _object_aead(self, salt: bytes, associated_data: bytes) -> AESGCM:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt,
                    info=associated_data)
        return AESGCM(hkdf.derive(self._key))


class ChunkCipher:
    """AES-256-GCM for small objects whole (a chunk, a pack's trailer): ``nonce ||
    ciphertext || tag``, with associated data that binds the object to its name."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def seal(self, data: bytes, associated_data: bytes) -> bytes:
        nonce = os.urandom(CHUNK_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        """The plaintext, or ``IntegrityError`` if ``sealed`` does not authenticate."""
        from cryptography.exceptions import InvalidTag

        if len(sealed) < CHUNK_NONCE_BYTES + TAG_BYTES:
            raise IntegrityError(f"{len(sealed)} bytes are too few for a sealed object")
        try:
            return self._aead.decrypt(sealed[:CHUNK_NONCE_BYTES], sealed[CHUNK_NONCE_BYTES:],
                                      associated_data)
        except InvalidTag:
            raise IntegrityError("failed authentication: altered, or not stored under this "
                                 "name in this repository") from None


def _open_segment(aead: AESGCM, prefix: bytes, index: int, piece: bytes, last: bool,
                  offset: int) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return aead.decrypt(_nonce(prefix, index, last), piece, None)
    except InvalidTag:
        pass
    where = f"segment {index} (stored bytes {offset}-{offset + len(piece)})"
    if last and _opens(aead, prefix, index, piece, last=False):
        raise IntegrityError(f"the stream ends after {where}, which is not its final "
                             "segment: it was truncated")
    raise IntegrityError(f"{where} failed authentication: the object was altered, "
                         "reordered, or copied from another key or repository")


def _opens(aead: AESGCM, prefix: bytes, index: int, piece: bytes, *, last: bool) -> bool:
    from cryptography.exceptions import InvalidTag

    try:
        aead.decrypt(_nonce(prefix, index, last), piece, None)
    except InvalidTag:
        return False
    return True


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= MAX_SEGMENTS:
        raise IntegrityError(f"a stream has at most {MAX_SEGMENTS} segments")
    return prefix + struct.pack(">IB", index, last)


def _segments(chunks: Iterable[bytes], first_bytes: int,
              size_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """Re-cut ``chunks`` into ``first_bytes``, then ``size_bytes`` pieces, each with
    whether it is the last; a full piece is held back until more data (or the end) shows
    which it is. An empty stream is one empty last piece."""
    buffer, want = bytearray(), first_bytes
    for chunk in chunks:
        buffer += chunk
        start = 0
        while len(buffer) - start > want:
            with memoryview(buffer) as view:
                piece = bytes(view[start:start + want])
            yield piece, False
            start, want = start + want, size_bytes
        del buffer[:start]
    yield bytes(buffer), True


def new_encryption(password: str) -> tuple[Encryption, RepositoryCipher]:
    """A new random repository key, wrapped under ``password``, for a new repository."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    kdf = Kdf(n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
              salt=base64.b64encode(os.urandom(SCRYPT_SALT_BYTES)).decode())
    key = os.urandom(KEY_BYTES)
    wrapped = aes_key_wrap(_wrapping_key(password, kdf), key)
    encryption = Encryption(kdf=kdf, wrapped_key=base64.b64encode(wrapped).decode())
    return encryption, RepositoryCipher(key)


def open_encryption(encryption: Encryption, password: str) -> RepositoryCipher:
    """The repository's cipher; ``PrecheckFailed`` if ``password`` does not unwrap its key."""
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

    try:
        wrapped = base64.b64decode(encryption.wrapped_key, validate=True)
        return RepositoryCipher(aes_key_unwrap(_wrapping_key(password, encryption.kdf), wrapped))
    except (InvalidUnwrap, ValueError):
        raise PrecheckFailed("the password does not open the repository key (a wrong "
                             "password, or config.json was altered)") from None


def _wrapping_key(password: str, kdf: Kdf) -> bytes:
    return _scrypt(password.encode(), base64.b64decode(kdf.salt), kdf.n, kdf.r, kdf.p)


@functools.lru_cache(maxsize=8)
def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """scrypt costs ~0.4 s: each step of a session would pay it, so a process pays it once."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(password)
