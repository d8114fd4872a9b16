"""The streaming AEAD: round trips, every single-byte flip, every truncation, reordered,
dropped and duplicated segments, the wrong key or name, and Tink reading what we write
(and the reverse). Tiny segments (64 bytes: 8 bytes of plaintext in the first, 48 in
the others) let a test try every byte of many segments; the format is the same."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.encryption import (
    HEADER_BYTES,
    SEGMENT_BYTES,
    TAG_BYTES,
    RepositoryCipher,
    new_encryption,
    open_encryption,
)
from workflows.errors import IntegrityError, PrecheckFailed
from workflows.snapshots import Encryption, Kdf

SMALL = 64  #: ciphertext segment bytes in most tests
AD = b"data/snap-1/dump.sql.zst"
KEY = bytes(range(32))


def cipher(segment_bytes: int = SMALL, key: bytes = KEY) -> RepositoryCipher:
    return RepositoryCipher(key, segment_bytes=segment_bytes)


def sealed(plaintext: bytes, segment_bytes: int = SMALL, ad: bytes = AD) -> bytes:
    return b"".join(cipher(segment_bytes).encrypt([plaintext], ad))


def opened(stored: bytes, segment_bytes: int = SMALL, ad: bytes = AD,
           key: bytes = KEY) -> bytes:
    return b"".join(cipher(segment_bytes, key).decrypt([stored], ad))


def released(stored: bytes, ad: bytes = AD, key: bytes = KEY) -> tuple[bytes, str]:
    """What decryption yielded before it refused, and its reason ("" if it did not)."""
    out = bytearray()
    try:
        for piece in cipher(SMALL, key).decrypt([stored], ad):
            out += piece
    except IntegrityError as e:
        return bytes(out), str(e)
    return bytes(out), ""


def boundaries(plain_bytes: int) -> list[int]:
    """Plaintext lengths released after each segment of a SMALL-segment stream."""
    first, rest = SMALL - HEADER_BYTES - TAG_BYTES, SMALL - TAG_BYTES
    ends, end = [], first
    while end < plain_bytes:
        ends.append(end)
        end += rest
    return [0, *ends, plain_bytes]


PLAINTEXT = os.urandom(300)   # 7 segments of 64 bytes: 8 + 6×48 + 4
STORED = sealed(PLAINTEXT)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 55, 56, 57, 104, 105, 1000])
def test_round_trip_at_and_around_segment_edges(size: int) -> None:
    data = os.urandom(size)
    stored = sealed(data)
    assert opened(stored) == data
    segments = max(1, -(-(size + HEADER_BYTES) // (SMALL - TAG_BYTES)))
    assert len(stored) == HEADER_BYTES + size + TAG_BYTES * segments


@pytest.mark.parametrize("size", [0, SEGMENT_BYTES - HEADER_BYTES - TAG_BYTES,
                                  SEGMENT_BYTES - HEADER_BYTES - TAG_BYTES + 1,
                                  3 * SEGMENT_BYTES + 12345])
def test_round_trip_with_repository_segments(size: int) -> None:
    data = os.urandom(size)
    chunks = [data[i:i + 300_000] for i in range(0, size, 300_000)] or [b""]
    stored = b"".join(RepositoryCipher(KEY).encrypt(iter(chunks), AD))
    assert b"".join(RepositoryCipher(KEY).decrypt([stored[:7], stored[7:]], AD)) == data


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), cuts_in=st.lists(st.integers(0, 700), max_size=8),
       cuts_out=st.lists(st.integers(0, 800), max_size=8))
def test_round_trip_whatever_the_chunking(data: bytes, cuts_in: list[int],
                                          cuts_out: list[int]) -> None:
    stored = b"".join(cipher().encrypt(split(data, cuts_in), AD))
    assert b"".join(cipher().decrypt(split(stored, cuts_out), AD)) == data


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    edges = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    return (data[a:b] for a, b in zip(edges, edges[1:], strict=False))


def test_the_same_plaintext_never_encrypts_the_same() -> None:
    assert sealed(PLAINTEXT) != sealed(PLAINTEXT)  # random salt and nonce prefix


def test_every_single_byte_flip_is_refused_and_nothing_after_it_is_released() -> None:
    ends = boundaries(len(PLAINTEXT))
    for offset in range(len(STORED)):
        for bit in (0x01, 0x80):
            corrupt = bytearray(STORED)
            corrupt[offset] ^= bit
            out, reason = released(bytes(corrupt))
            assert reason, f"flip at byte {offset} went unnoticed"
            segment = offset // SMALL  # the header is part of segment 0's 64 bytes
            # Only whole segments before the corrupt one: never a byte of it or after.
            assert out == PLAINTEXT[:ends[segment]], offset


def test_truncation_anywhere_is_refused() -> None:
    ends = boundaries(len(PLAINTEXT))
    for length in range(len(STORED)):
        out, reason = released(STORED[:length])
        assert reason, f"a stream cut to {length} bytes was accepted"
        assert PLAINTEXT.startswith(out) and len(out) in ends


def test_truncation_at_every_segment_boundary_names_it() -> None:
    for length in range(HEADER_BYTES + SMALL - HEADER_BYTES, len(STORED), SMALL):
        out, reason = released(STORED[:length])
        assert "not its final segment: it was truncated" in reason, length


def test_bytes_after_the_final_segment_are_refused() -> None:
    assert released(STORED + b"\0")[1]
    assert released(STORED + STORED[-SMALL:])[1]


def segments_of(stored: bytes) -> list[bytes]:
    body = stored[SMALL:]
    return [stored[:SMALL]] + [body[i:i + SMALL] for i in range(0, len(body), SMALL)]


@pytest.mark.parametrize("change", ["swap 1 and 2", "drop 3", "repeat 2", "swap last two",
                                    "drop last"])
def test_reordered_dropped_or_repeated_segments_are_refused(change: str) -> None:
    parts = segments_of(STORED)
    if change == "swap 1 and 2":
        parts[1], parts[2] = parts[2], parts[1]
    elif change == "drop 3":
        del parts[3]
    elif change == "repeat 2":
        parts.insert(2, parts[2])
    elif change == "swap last two":
        parts[-2], parts[-1] = parts[-1], parts[-2]
    else:
        del parts[-1]
    out, reason = released(b"".join(parts))
    assert reason and PLAINTEXT.startswith(out)


def test_a_segment_from_another_stream_is_refused() -> None:
    other = segments_of(sealed(PLAINTEXT))
    parts = segments_of(STORED)
    parts[2] = other[2]
    assert released(b"".join(parts))[1]


def test_wrong_key_or_another_name_is_refused_at_the_first_segment() -> None:
    out, reason = released(STORED, key=bytes(32))
    assert out == b"" and "segment 0 " in reason
    out, reason = released(STORED, ad=b"data/snap-2/dump.sql.zst")
    assert out == b"" and "another key" in reason


def test_empty_stream_round_trips_and_an_empty_object_does_not_open() -> None:
    stored = sealed(b"")
    assert len(stored) == HEADER_BYTES + TAG_BYTES and opened(stored) == b""
    for bad in (b"", stored[:-1], stored[:HEADER_BYTES]):
        with pytest.raises(IntegrityError, match="too few"):
            opened(bad)


def test_a_foreign_header_is_refused() -> None:
    with pytest.raises(IntegrityError, match="not a AES256_GCM_HKDF_1MB stream"):
        opened(bytes([24]) + STORED[1:])


# --- Tink, the reference implementation --------------------------------------------


def tink_primitive(segment_bytes: int) -> object:
    tink = pytest.importorskip("tink")
    from tink import secret_key_access, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2 as pb
    from tink.proto import common_pb2, tink_pb2

    streaming_aead.register()
    key = pb.AesGcmHkdfStreamingKey(version=0, key_value=KEY, params=pb.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=segment_bytes, derived_key_size=32,
        hkdf_hash_type=common_pb2.SHA256))
    keyset = tink_pb2.Keyset(primary_key_id=1, key=[tink_pb2.Keyset.Key(
        key_data=tink_pb2.KeyData(
            type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
            value=key.SerializeToString(), key_material_type=tink_pb2.KeyData.SYMMETRIC),
        status=tink_pb2.ENABLED, key_id=1, output_prefix_type=tink_pb2.RAW)])
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _Kept(io.BytesIO):
    def close(self) -> None:  # Tink closes its destination; keep the bytes readable
        pass


@pytest.mark.parametrize(("segment_bytes", "size"), [
    (SEGMENT_BYTES, 0), (SEGMENT_BYTES, SEGMENT_BYTES - HEADER_BYTES - TAG_BYTES),
    (SEGMENT_BYTES, 2 * SEGMENT_BYTES + 99), (SMALL, 0), (SMALL, 8), (SMALL, 300)])
def test_tink_reads_ours_and_we_read_tinks(segment_bytes: int, size: int) -> None:
    primitive = tink_primitive(segment_bytes)
    data = os.urandom(size)
    ours = sealed(data, segment_bytes)
    with primitive.new_decrypting_stream(io.BytesIO(ours), AD) as stream:  # type: ignore[attr-defined]
        assert stream.read() == data
    theirs = _Kept()
    with primitive.new_encrypting_stream(theirs, AD) as stream:  # type: ignore[attr-defined]
        stream.write(data)
    assert len(theirs.getvalue()) == len(ours)
    assert opened(theirs.getvalue(), segment_bytes) == data


# --- the password and the repository key ---------------------------------------------


def test_the_password_unwraps_the_repository_key() -> None:
    encryption, made = new_encryption("correct horse")
    again = open_encryption(Encryption.model_validate_json(encryption.model_dump_json()),
                            "correct horse")
    assert opened_by(again, b"".join(made.encrypt([b"hello"], AD))) == b"hello"
    assert "correct horse" not in encryption.model_dump_json()


def opened_by(c: RepositoryCipher, stored: bytes) -> bytes:
    return b"".join(c.decrypt([stored], AD))


def test_a_wrong_password_fails_at_once_without_showing_it() -> None:
    encryption, _ = new_encryption("correct horse")
    with pytest.raises(PrecheckFailed, match="does not open the repository key") as e:
        open_encryption(encryption, "battery staple")
    assert "battery" not in str(e.value) and "horse" not in str(e.value)


def test_an_altered_wrapped_key_is_a_wrong_password() -> None:
    encryption, _ = new_encryption("pw")
    wrapped = bytearray(base64.b64decode(encryption.wrapped_key))
    wrapped[5] ^= 1
    altered = encryption.model_copy(update={"wrapped_key": base64.b64encode(wrapped).decode()})
    with pytest.raises(PrecheckFailed):
        open_encryption(altered, "pw")


@pytest.mark.parametrize(("n", "r", "reason"), [(2**15 + 1, 8, "power of two"),
                                                (2**22, 8, "MiB"), (2**18, 64, "MiB")])
def test_a_config_cannot_ask_for_absurd_scrypt_costs(n: int, r: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Kdf(n=n, r=r, p=1, salt="AAAAAAAAAAAAAAAAAAAAAA==")
