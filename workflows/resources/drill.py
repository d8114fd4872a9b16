"""RestoreDrill: prove on a schedule that snapshots restore (KubeStash's BackupVerifier).

A drill restores a snapshot of each configuration it names into a scratch database
(``<databasePrefix><source database>`` on the scratch AppBinding), checks every table's
rows against what the backup counted while dumping, runs the user's SQL assertions, and
drops the scratch database. Its status says the result, the duration and what failed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from workflows.resources.backup import CronExpression, TimeZone
from workflows.resources.base import LocalRef, Model, Name, Resource, TargetRef

#: Longest MySQL/MariaDB database name, in characters.
MAX_DATABASE_CHARS = 64


class DrillSnapshots(StrEnum):
    LATEST = "Latest"        #: the newest snapshot of each configuration
    EVERY_NEW = "EveryNew"   #: every snapshot taken since the last drill, oldest first


class ScratchTarget(Model):
    """Where snapshots are restored for the check: a server and a name prefix."""

    ref: TargetRef
    database_prefix: str = Field(default="stashq_drill_", min_length=1, max_length=32,
                                 pattern=r"^[A-Za-z0-9_]+$")


class Assertion(Model):
    """A query run on the scratch database and the result it must give: ``expected``
    (the first column of the first row, as text) or ``expectedRows`` (every row, each
    column as text; NULL as null)."""

    name: str | None = Field(default=None, min_length=1, max_length=128)
    query: str = Field(min_length=1, max_length=65536)
    expected: str | None = None
    expected_rows: tuple[tuple[str | None, ...], ...] | None = None

    @model_validator(mode="after")
    def _one(self) -> Assertion:
        if (self.expected is None) == (self.expected_rows is None):
            raise ValueError("give either expected or expectedRows")
        return self


class RestoreDrillSpec(Model):
    schedule: CronExpression | None = None  #: None: only by hand (``stashq verify``)
    time_zone: TimeZone = "UTC"
    paused: bool = False
    repository: LocalRef
    #: BackupConfigurations whose snapshots are checked.
    configurations: Annotated[tuple[Name, ...], Field(min_length=1, max_length=100)]
    snapshots: DrillSnapshots = DrillSnapshots.LATEST
    scratch: ScratchTarget
    assertions: tuple[Assertion, ...] = Field(default=(), max_length=100)
    #: Seconds one drill (restore, checks, drop) may take before it is failed.
    #: At least 5: a drill of a small database takes seconds (tests use that).
    timeout_seconds: int = Field(default=6 * 3600, ge=5, le=48 * 3600)


class RestoreDrill(Resource):
    KIND: ClassVar[str] = "RestoreDrill"
    kind: Literal["RestoreDrill"]
    spec: RestoreDrillSpec


def scratch_name(prefix: str, database: str) -> str:
    """The scratch database a source database is restored into."""
    return f"{prefix}{database}"[:MAX_DATABASE_CHARS]
