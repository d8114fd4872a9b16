"""RestoreSession: put a snapshot (``latest`` or an id) back into a target."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from workflows.resources.base import (
    Compat,
    CompatList,
    LocalRef,
    Model,
    Resource,
    TargetRef,
    TaskRef,
)
from workflows.resources.hooks import HOOKS_SCHEMA, RestoreHooks

LATEST = "latest"


class RestoreRule(Model):
    #: The source whose snapshots ``latest`` chooses among: the BackupConfiguration (or
    #: AppBinding) that took them (Stash: the host whose backup is restored).
    source_host: str | None = None
    target_hosts: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = (LATEST,)
    paths: tuple[str, ...] = ()


class RestoreTarget(Model):
    ref: TargetRef
    replicas: int | None = Field(default=None, ge=1)
    rules: tuple[RestoreRule, ...] = (RestoreRule(),)
    volume_claim_templates: CompatList = ()
    args: tuple[str, ...] = ()
    #: Replace the tables of databases that exist: without it, pre-check refuses a
    #: restore into a database that holds any.
    overwrite: bool = False


class PointInTime(Model):
    """Restore to a point after a snapshot (``workflows/recovery.py`` says what each
    kind of point means): exactly one of ``time`` (RFC 3339 with its zone), ``gtid``
    (``domain-server-sequence``), or ``file`` + ``position``."""

    time: datetime | None = None
    gtid: str | None = Field(default=None, pattern=r"^\d+-\d+-\d+$")
    file: str | None = None
    position: int | None = Field(default=None, ge=4)

    @field_validator("time")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f'"{value.isoformat()}" has no time zone: write it as RFC 3339 '
                             'with one, e.g. "2026-12-06T10:15:00Z" or "...+01:00"')
        return value

    @model_validator(mode="after")
    def _one(self) -> PointInTime:
        given = [self.time is not None, self.gtid is not None,
                 self.file is not None or self.position is not None]
        if sum(given) != 1:
            raise ValueError("name exactly one point: time, gtid, or file and position")
        if (self.file is None) != (self.position is None):
            raise ValueError("a binlog position needs both file and position")
        return self


class RestoreSessionSpec(Model):
    repository: LocalRef
    target: RestoreTarget
    task: TaskRef = TaskRef()
    hooks: Annotated[RestoreHooks, HOOKS_SCHEMA] = RestoreHooks()
    time_out: str | None = None
    runtime_settings: Compat = Field(default_factory=dict)
    #: Restore the newest snapshot before this point, then replay the archived binlog
    #: up to it (None: the snapshot alone).
    point_in_time: PointInTime | None = None


class RestoreSession(Resource):
    KIND: ClassVar[str] = "RestoreSession"
    kind: Literal["RestoreSession"]
    spec: RestoreSessionSpec

    @property
    def snapshot(self) -> str:
        """The one snapshot this session restores (``latest`` or an id)."""
        return self.spec.target.rules[0].snapshots[0]

    @property
    def source(self) -> str | None:
        """The source of that snapshot (``sourceHost``), if the session names one."""
        return self.spec.target.rules[0].source_host
