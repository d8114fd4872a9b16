"""BackupConfiguration (what to back up, when, where, how long to keep) and
BackupSession (one run of it)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field

from workflows.resources.base import (
    Compat,
    LocalRef,
    Model,
    Name,
    Resource,
    TargetRef,
    TaskRef,
)
from workflows.resources.hooks import HOOKS_SCHEMA, BackupHooks


class RetentionPolicy(Model):
    """restic ``forget --keep-*`` semantics: a snapshot survives if any rule keeps it."""

    name: str = "keep"
    keep_last: int | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_yearly: int | None = Field(default=None, ge=0)
    keep_tags: tuple[str, ...] = ()
    prune: bool = False
    dry_run: bool = False


class BackupTarget(Model):
    ref: TargetRef
    replicas: int | None = Field(default=None, ge=1)
    args: tuple[str, ...] = ()


class RetryConfig(Model):
    max_retry: int = Field(default=0, ge=0, le=20)
    delay: str = "1m"


#: Seconds between two archive runs of a configuration's binlog when it names none: the
#: recovery point lags the server by at most this plus one upload (Percona's collector: 60).
BINLOG_ARCHIVE_INTERVAL_S = 60


class BinlogArchive(Model):
    """Point-in-time recovery: archive the target's binary log continuously, every
    ``intervalSeconds`` up to its current end (the active file too, not only rotated ones)."""

    enabled: bool = True
    interval_seconds: int = Field(default=BINLOG_ARCHIVE_INTERVAL_S, ge=5, le=3600)


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f'"{value}" is not a cron expression')
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'"{value}" is not a known time zone') from None
    return value


#: A cron schedule and the zone it is read in (a RestoreDrill's too).
CronExpression = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_zone)]


class BackupConfigurationSpec(Model):
    schedule: CronExpression | None = None
    time_zone: TimeZone = "UTC"
    paused: bool = False
    repository: LocalRef
    target: BackupTarget
    task: TaskRef = TaskRef()
    retention_policy: RetentionPolicy | None = None
    hooks: Annotated[BackupHooks, HOOKS_SCHEMA] = BackupHooks()
    backup_history_limit: int = Field(default=1, ge=0)
    time_out: str | None = None
    retry_config: RetryConfig | None = None
    binlog_archive: BinlogArchive | None = None
    # Accepted for compatibility with Stash manifests; Kubernetes-only.
    runtime_settings: Compat = Field(default_factory=dict)
    temp_dir: Compat = Field(default_factory=dict)
    interim_volume_template: Compat = Field(default_factory=dict)



class BackupConfiguration(Resource):
    KIND: ClassVar[str] = "BackupConfiguration"
    kind: Literal["BackupConfiguration"]
    spec: BackupConfigurationSpec


class Invoker(Model):
    api_group: str = "stashq.io"
    kind: Literal["BackupConfiguration"] = "BackupConfiguration"
    name: Name


class BackupSessionSpec(Model):
    invoker: Invoker
    retry_left: int | None = Field(default=None, ge=0)


class BackupSession(Resource):
    KIND: ClassVar[str] = "BackupSession"
    kind: Literal["BackupSession"]
    spec: BackupSessionSpec
