"""Snapshot manifests, the repository config and the repository key layout.

    <prefix>/config.json                    format version (and encryption parameters)
    <prefix>/data/<snapshot-id>/<stream>    compressed (and encrypted) dump streams
    <prefix>/snapshots/<snapshot-id>.json   manifest, written last (encrypted too)
    <prefix>/locks/<name>.json              exclusive locks (prune, wipe)
    <prefix>/packs/…, <prefix>/index/…      format 3: chunks and where they are
                                            (``workflows/packs.py``), instead of data/

A snapshot exists if and only if its manifest exists: data without a manifest is an
unfinished or failed write, garbage for prune. The snapshot id is the session name, so
a redelivered step finds its own finished snapshot instead of taking a second one
(Stash issue #1030). ``docs/repository-format.md`` describes every byte.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from workflows.packs import Chunker, ChunkList

#: Layout and manifests; the ``config.json`` of an unencrypted repository.
FORMAT_VERSION = 1
#: The ``config.json`` of an encrypted repository: a StashQ from before encryption
#: refuses it ("newer format") instead of reading ciphertext as zstd.
ENCRYPTED_FORMAT_VERSION = 2
#: Deduplicating (``workflows/packs.py``), plain or encrypted: what new repositories get.
DEDUP_FORMAT_VERSION = 3
#: The newest format this StashQ reads; a newer ``config.json`` is refused.
LATEST_FORMAT_VERSION = DEDUP_FORMAT_VERSION
#: How streams and manifests are encrypted: Tink's streaming AEAD key template name.
STREAM_SCHEME: Literal["AES256_GCM_HKDF_1MB"] = "AES256_GCM_HKDF_1MB"
#: scrypt memory (128·r·N bytes) a config.json may ask for: a forged one cannot make
#: a worker allocate gigabytes (ours asks for 32 MiB).
MAX_SCRYPT_BYTES = 256 * 2**20
CONFIG_KEY = "config.json"
SNAPSHOTS_DIR = "snapshots/"
DATA_DIR = "data/"
LOCKS_DIR = "locks/"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class TableRows(_Wire):
    """A table's rows in a stream, as dumped (``workflows/row_digests.py``)."""

    table: str                        #: "db.table"
    rows: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{16}$")  #: CRC-32 of each row, summed mod 2**64


class Stream(_Wire):
    name: str
    key: str
    compression: Literal["zstd"] = "zstd"
    size_bytes: int = Field(ge=0)     #: stored (compressed, maybe encrypted) bytes
    raw_bytes: int = Field(ge=0)      #: bytes the dump client produced
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  #: of the stored bytes
    #: A parallel dump's streams (None: the one stream of a single dump). Restore order:
    #: every "schema" stream, then the "data" streams at once, then "post-data" (routines,
    #: events, triggers, views: created after the rows, so triggers do not fire for them).
    role: Literal["schema", "data", "post-data"] | None = None
    tables: tuple[str, ...] = ()      #: "db.table" whose rows a data stream holds
    where: str | None = None          #: the key range of ``tables`` it holds, if not all
    #: Format 3: the stream's chunks (``key`` is then empty, and ``sha256`` is of the
    #: chunk list's bytes, ``size_bytes`` the stored bytes of all its chunks).
    chunks: ChunkList | None = None
    #: Format 3: stored bytes this stream added to the repository (new chunks only).
    added_bytes: int | None = Field(default=None, ge=0)


    #: Rows per table the stream holds, counted while it was dumped (empty: a stream
    #: from before they were counted, or one without rows). What a restore drill checks.
    table_rows: tuple[TableRows, ...] = ()


class Position(_Wire):
    """Where a snapshot's data stands, as far as the backup could tell.

    A logical snapshot records the binlog coordinates of its consistent snapshot
    (``gtid``, ``log_file``, ``log_pos``): where a point-in-time restore starts its
    replay. None of them when the server writes no binlog.

    A Galera SST donor keeps committing while mariadb-backup copies (BACKUP STAGE
    BLOCK_COMMIT does not pause commits on a donor), so the data lies between
    ``seqno`` (the donor's state when the SST began) and ``end_seqno`` (what
    mariadb-backup reported at its end). The exact seqno is recovered from the
    prepared data at restore time and written to ``grastate.dat``.
    """

    cluster_uuid: str | None = None   #: Galera state UUID
    seqno: int | None = None          #: Galera seqno when the SST began (lower bound)
    end_seqno: int | None = None      #: Galera seqno at the end of the copy (upper bound)
    lsn: int | None = None            #: InnoDB LSN the backup reaches (xtrabackup_checkpoints)
    gtid: str | None = None           #: binlog GTID of the copy, if the server logs binlogs
    log_file: str | None = None       #: binlog file of the snapshot's consistent point
    log_pos: int | None = Field(default=None, ge=0)  #: byte position in ``log_file``


class Snapshot(_Wire):
    format_version: int = FORMAT_VERSION
    id: str
    session: str
    repository: str
    kind: Literal["logical", "physical"] = "logical"
    engine: str
    server_version: str
    target: str                       #: AppBinding name
    #: BackupConfiguration that took it (None in manifests from before it was recorded:
    #: then its session name ``<config>-<unix time>`` tells, see ``workflows.restores``).
    configuration: str | None = None
    databases: tuple[str, ...] = ()   #: empty = all user databases
    streams: tuple[Stream, ...]
    started_at: datetime
    finished_at: datetime
    tags: tuple[str, ...] = ()
    #: How a physical snapshot was taken: "galera-sst" or "mariabackup" (None: logical).
    method: str | None = None
    position: Position | None = None

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.streams)

    @property
    def raw_bytes(self) -> int:
        return sum(s.raw_bytes for s in self.streams)

    @property
    def added_bytes(self) -> int:
        """Stored bytes the snapshot added (format 3: new chunks; before: all of it)."""
        return sum(s.size_bytes if s.added_bytes is None else s.added_bytes
                   for s in self.streams)

    @property
    def rows_counted(self) -> bool:
        """Whether the backup counted rows (snapshots from before it did not)."""
        return any(s.table_rows for s in self.streams)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        return cls.model_validate_json(data)


class Kdf(_Wire):
    """scrypt (RFC 7914) parameters and salt: password → the key that wraps the repository key."""

    name: Literal["scrypt"] = "scrypt"
    n: int = Field(ge=2)              #: CPU/memory cost, a power of two
    r: int = Field(ge=1, le=64)       #: block size
    p: int = Field(ge=1, le=64)       #: parallelism
    salt: str = Field(min_length=16)  #: base64 of 16 random bytes

    @model_validator(mode="after")
    def _bounded(self) -> Kdf:
        if self.n & (self.n - 1):
            raise ValueError(f"scrypt n={self.n} is not a power of two")
        if 128 * self.n * self.r > MAX_SCRYPT_BYTES:
            raise ValueError(f"scrypt n={self.n}, r={self.r} needs more than "
                             f"{MAX_SCRYPT_BYTES // 2**20} MiB")
        return self


class Encryption(_Wire):
    """How a repository is encrypted, as ``config.json`` records it (no secret in it)."""

    scheme: Literal["AES256_GCM_HKDF_1MB"] = STREAM_SCHEME
    kdf: Kdf
    key_wrap: Literal["AES-KW"] = "AES-KW"  #: RFC 3394, whose check value tells a wrong password
    wrapped_key: str = Field(min_length=1)  #: base64 of the wrapped 32-byte repository key


class RepositoryConfig(_Wire):
    format_version: int = FORMAT_VERSION
    encryption: Encryption | None = None
    chunker: Chunker | None = None  #: format 3

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RepositoryConfig:
        return cls.model_validate_json(data)


def new_config(encryption: Encryption | None, chunker: Chunker | None = None) -> RepositoryConfig:
    """Format 3 with a ``chunker``; without one, the format 1 or 2 of one object per stream."""
    if chunker is not None:
        return RepositoryConfig(format_version=DEDUP_FORMAT_VERSION, encryption=encryption,
                                chunker=chunker)
    version = FORMAT_VERSION if encryption is None else ENCRYPTED_FORMAT_VERSION
    return RepositoryConfig(format_version=version, encryption=encryption)


def describe_format(config: RepositoryConfig | None) -> str:
    """What ``stashq snapshots`` and ``check`` say of a repository's format."""
    if config is None:
        return "no format yet (nothing written)"
    how = {DEDUP_FORMAT_VERSION: "deduplicating: chunks in packs"}.get(
        config.format_version, "one object per stream")
    sealed = "encrypted" if config.encryption is not None else "not encrypted"
    return f"format {config.format_version} ({how}, {sealed})"


def manifest_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS_DIR}{snapshot_id}.json"


def data_key(snapshot_id: str, stream: str) -> str:
    return f"{DATA_DIR}{snapshot_id}/{stream}"


def snapshot_id_of(key: str) -> str | None:
    """The id in ``snapshots/<id>.json``, or None for any other key."""
    if key.startswith(SNAPSHOTS_DIR) and key.endswith(".json"):
        return key[len(SNAPSHOTS_DIR):-len(".json")]
    return None
