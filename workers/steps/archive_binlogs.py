"""archive-binlogs: one archive run of a BackupConfiguration's binlog, as beat asked.

Beat emits one message per configuration and interval slot (``beat/archiving.py``); a
message carries only ``namespace/name`` and the slot. It is not a session: nothing to
claim, no phase; it is safe to run twice, since a run archives from where the
repository's last segment says and writes each segment once (the manifest last). Two
runs of one configuration never overlap: the second finds the archive lock taken and
leaves its slot to the first. The run holds the repository lock shared, as a backup
does, so that retention never deletes under it.

Afterwards, the configuration's status says where archiving stands (position, last
archived transaction time, lag, window, gaps, bytes) and so does the Repository's, per
configuration; the numbers go to the Pushgateway too.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import shared_task

from workers.binlog_archive import RunReport, archive_run
from workers.context import SessionRef, StepContext
from workers.locks import RepositoryLocked, held, repository_lock
from workers.logs import session_context
from workers.pauses import pause_at
from workers.state.base import ResourceStore
from workers.steps.session import CONTROL_QUEUE, ROUTES, app_store
from workflows.binlogs import BinlogSegment
from workflows.errors import StashQError
from workflows.recovery import iso, snapshot_points, windows
from workflows.resources import BackupConfiguration, Repository
from workflows.settings import Settings

log = logging.getLogger(__name__)

TASK = "stashq.archive_binlogs"
ROUTES[TASK] = {"queue": CONTROL_QUEUE}
#: Gaps the status lists (newest last); ``gapCount`` counts them all, as the repository
#: keeps them all.
STATUS_GAPS = 10


class ConfigContext(StepContext):
    """A step context for a BackupConfiguration's own work, without a session."""

    def __init__(self, settings: Settings, store: ResourceStore,
                 config: BackupConfiguration) -> None:
        super().__init__(settings, store, SessionRef("BackupSession", config.namespace,
                                                     config.name))
        self.config = config  # what the session would name (cached_property set)


def archive_lock(config: BackupConfiguration) -> str:
    return f"binlog-archive:{config.namespace}/{config.name}"


def archive(settings: Settings, store: ResourceStore, namespace: str, name: str) -> None:
    """One archive run of BackupConfiguration ``namespace/name``, if it archives."""
    config = store.get(BackupConfiguration, name, namespace)
    spec = config.spec.binlog_archive
    if spec is None or not spec.enabled:
        log.info("binlog archiving is off; nothing to do")
        return
    ctx = ConfigContext(settings, store, config)

    def run() -> RunReport:
        return archive_run(ctx.repo, config.name, ctx.connection, what=_what(ctx),
                           pause=lambda point: pause_at(settings, point))

    try:
        lease_s = settings.lock_lease_s
        with held(store, archive_lock(config), str(ctx.ref), exclusive=True,
                  purpose="archive binlogs", wait_s=0, lease_s=lease_s), \
                repository_lock(store, ctx.repository, str(ctx.ref), exclusive=False,
                                purpose="archive binlogs", wait_s=spec.interval_seconds,
                                lease_s=lease_s):
            report = run()
    except RepositoryLocked as e:
        log.info("archive run skipped: %s", e)
        return
    except StashQError as e:
        log.error("binlog archive failed: %s", e.reason)
        _patch(ctx, {"binlogArchive": {"phase": "Failed", "reason": e.reason,
                                       "lastRunAt": iso(datetime.now(UTC))}})
        raise
    record(ctx, report)


def _what(ctx: StepContext) -> str:
    return f'AppBinding "{ctx.appbinding.name}"'


def record(ctx: ConfigContext, report: RunReport) -> None:
    """The configuration's and the repository's status after a run; the metrics."""
    config = ctx.config
    assert config is not None
    segments = ctx.repo.binlog_segments(config.name)
    points = snapshot_points(ctx.repo.list_snapshots(), config.name)
    found = windows(segments, points)
    status = archive_status(segments, report, found, config.status.get("binlogArchive") or {})
    _patch(ctx, {"binlogArchive": status})
    repo = ctx.repository
    ctx.store.patch_status(Repository, repo.name, repo.namespace, {"pointInTime": {
        config.name: {k: status.get(k) for k in ("window", "windows", "gaps", "gapCount",
                                                  "lastArchivedEventTime")}}})
    push_archive_metrics(ctx, status)


def archive_status(segments: list[BinlogSegment], report: RunReport, found: list[Any],
                   previous: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    last = segments[-1] if segments else None
    timed = [s.last_time for s in segments if s.last_time is not None]
    gaps = [s.gap.model_dump(mode="json", by_alias=True) for s in segments if s.gap]
    current = found[-1] if found else None
    status: dict[str, Any] = {
        "phase": "Archiving", "reason": None, "lastRunAt": iso(now),
        "position": None if last is None else {
            "server": last.server, "file": last.file, "position": last.end,
            "gtid": last.gtid_end},
        "lastArchivedEventTime": iso(timed[-1]) if timed else None,
        "lagSeconds": round(time.time() - report.read_at, 3),
        "segments": len(segments),
        "archivedBytes": sum(s.stream.size_bytes for s in segments if s.stream),
        "window": None if current is None or current.start is None else {
            "from": iso(current.start), "to": iso(current.end or current.start),
            "snapshot": current.snapshot},
        "windows": [{"from": iso(w.start) if w.start else None,
                     "to": iso(w.end) if w.end else None, "span": w.span} for w in found],
        "gaps": gaps[-STATUS_GAPS:], "gapCount": len(gaps)}
    if len(gaps) > len(previous.get("gaps") or []):
        status["lastGap"] = gaps[-1]
    return status


def _patch(ctx: ConfigContext, patch: dict[str, Any]) -> None:
    config = ctx.config
    assert config is not None
    ctx.store.patch_status(BackupConfiguration, config.name, config.namespace, patch)


def push_archive_metrics(ctx: ConfigContext, status: dict[str, Any]) -> None:
    if not ctx.settings.pushgateway_url:
        return
    from workers import metrics

    config = ctx.config
    assert config is not None
    try:
        metrics.push_archive(ctx.settings.pushgateway_url, metrics.ArchiveFacts(
            namespace=config.namespace, configuration=config.name,
            repository=ctx.repository.name, target=ctx.appbinding.name, status=status))
    except StashQError as e:
        log.warning("archive metrics not pushed: %s", e.reason)


@shared_task(name=TASK, bind=True, acks_late=True,  # type: ignore[untyped-decorator]
             reject_on_worker_lost=True)
def archive_binlogs(self: Any, ref: str, slot: int) -> None:
    """Archive the binlog of BackupConfiguration ``ref`` (``namespace/name``) for ``slot``."""
    namespace, _, name = ref.partition("/")
    with session_context(f"{name}@{slot}"):
        archive(self.app.stashq_settings, app_store(self.app), namespace, name)
