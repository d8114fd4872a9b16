"""Snapshot manifests and the repository key layout.

    <prefix>/config.json                    format version (and encryption parameters)
    <prefix>/data/<snapshot-id>/<stream>    compressed dump streams
    <prefix>/snapshots/<snapshot-id>.json   manifest, written last
    <prefix>/locks/<name>.json              exclusive locks (prune, wipe)

A snapshot exists if and only if its manifest exists: data without a manifest is an
unfinished or failed write, garbage for prune. The snapshot id is the session name, so
a redelivered step finds its own finished snapshot instead of taking a second one
(Stash issue #1030).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

FORMAT_VERSION = 1
CONFIG_KEY = "config.json"
SNAPSHOTS_DIR = "snapshots/"
DATA_DIR = "data/"
LOCKS_DIR = "locks/"


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Stream(_Wire):
    name: str
    key: str
    compression: Literal["zstd"] = "zstd"
    size_bytes: int = Field(ge=0)     #: stored (compressed) bytes
    raw_bytes: int = Field(ge=0)      #: bytes the dump client produced
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  #: of the stored bytes


class Position(_Wire):
    """Where a physical snapshot's data stands, as far as the backup could tell.

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


class Snapshot(_Wire):
    format_version: int = FORMAT_VERSION
    id: str
    session: str
    repository: str
    kind: Literal["logical", "physical"] = "logical"
    engine: str
    server_version: str
    target: str                       #: AppBinding name
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

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        return cls.model_validate_json(data)


def manifest_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS_DIR}{snapshot_id}.json"


def data_key(snapshot_id: str, stream: str) -> str:
    return f"{DATA_DIR}{snapshot_id}/{stream}"


def snapshot_id_of(key: str) -> str | None:
    """The id in ``snapshots/<id>.json``, or None for any other key."""
    if key.startswith(SNAPSHOTS_DIR) and key.endswith(".json"):
        return key[len(SNAPSHOTS_DIR):-len(".json")]
    return None
