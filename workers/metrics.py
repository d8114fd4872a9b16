"""Prometheus metrics pushed to a Pushgateway: after each session, and after each sweep.

Session metrics: names mirror Stash's under a ``stashq_`` prefix, so dashboards port
with a rename. One group per invoker (job ``stashq-<kind>-<namespace>-<name>``);
``pushadd`` keeps ``last_success_time_seconds`` from an earlier success when a later
session fails. A scheduled configuration's group also carries its schedule's interval,
so "no success for 1.5 intervals" is one PromQL expression for every configuration.

Sweep metrics: what the stale-session sweep (every worker and beat, every minute) sees
of the whole installation: sessions by phase, broker queue lengths, repository locks.
Groups ``stashq-sweep`` and (if the broker was readable) ``stashq-queue``, each replaced
whole by a push, so a released lock does not linger; every sweeper sees the same store
and broker, so whichever pushed last is right.

The dashboard and the alerts in the Helm chart use these names; the integration test
``tests/integration/test_metrics.py`` holds them to what a real worker pushes.
prometheus_client is imported here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

from workflows.drills import DrillReport
from workflows.errors import StorageError, TransientStorageError
from workflows.phases import Phase

log = logging.getLogger(__name__)

#: Seconds to wait for the Pushgateway before giving up on this push.
PUSH_TIMEOUT_S = 10.0
LABELS = ("invoker_kind", "invoker_name", "namespace", "repository", "target_kind",
          "target_name")


@dataclass(frozen=True)
class SessionFacts:
    """What the metrics describe, independent of where the status came from."""

    session_kind: str          #: BackupSession | RestoreSession
    invoker_kind: str          #: BackupConfiguration | RestoreSession
    invoker_name: str
    namespace: str
    repository: str
    target_kind: str
    target_name: str
    status: Mapping[str, Any]
    repository_status: Mapping[str, Any]
    #: Seconds of the longest gap between the configuration's slots (None: no schedule)
    schedule_interval_s: float | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {"invoker_kind": self.invoker_kind, "invoker_name": self.invoker_name,
                "namespace": self.namespace, "repository": self.repository,
                "target_kind": self.target_kind, "target_name": self.target_name}

    @property
    def job(self) -> str:
        return f"stashq-{self.invoker_kind.lower()}-{self.namespace}-{self.invoker_name}"


def build_registry(facts: SessionFacts) -> CollectorRegistry:
    registry = CollectorRegistry()
    prefix = "stashq_backupsession" if facts.session_kind == "BackupSession" \
        else "stashq_restoresession"
    succeeded = facts.status.get("phase") == Phase.SUCCEEDED

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, LABELS, registry=registry).labels(**facts.labels).set(value)

    gauge(f"{prefix}_success", "1 if the last session succeeded, else 0", int(succeeded))
    gauge(f"{prefix}_duration_seconds", "Duration of the last session",
          float(facts.status.get("sessionDurationSeconds", 0)))
    if succeeded:
        gauge(f"{prefix}_last_success_time_seconds", "Unix time of the last success",
              float(facts.status.get("completionTimestamp", 0)))
    snapshot = facts.status.get("snapshot") or {}
    if facts.session_kind == "BackupSession" and snapshot:
        gauge("stashq_host_data_size_bytes", "Bytes the dump produced",
              float(snapshot.get("rawSize", 0)))
        gauge("stashq_host_data_uploaded_bytes", "Bytes stored in the repository",
              float(snapshot.get("totalSize", 0)))
        gauge("stashq_host_data_processing_time_seconds", "Seconds spent dumping and uploading",
              float(snapshot.get("processingTimeSeconds", 0)))
    repo = facts.repository_status
    if repo:
        gauge("stashq_repository_size_bytes", "Bytes stored in the repository",
              float(repo.get("totalSizeBytes", 0)))
        gauge("stashq_repository_snapshots", "Snapshots in the repository",
              float(repo.get("snapshotCount", 0)))
    if facts.schedule_interval_s is not None:
        gauge("stashq_backupconfiguration_schedule_interval_seconds",
              "Longest gap between two slots of the configuration's schedule",
              facts.schedule_interval_s)
    return registry


@dataclass(frozen=True)
class LockFacts:
    """One repository's lock as the lease table shows it, by the store's clock."""

    namespace: str
    repository: str
    holders: int  #: live holders (shared backups, or one exclusive retention)
    held_s: float  #: how long the oldest live holder has held it; 0 if free


@dataclass(frozen=True)
class SweepFacts:
    """What one sweep saw of the whole installation."""

    sessions: Mapping[tuple[str, str], int]  #: (session kind, phase) -> sessions
    queued: Mapping[str, int] | None  #: queue -> messages waiting; None: broker unreadable
    unacked: int | None  #: messages taken by a worker, not yet acknowledged (running steps)
    locks: Sequence[LockFacts]  #: empty if the store holds no locks


#: The Pushgateway groups of the sweep metrics: the broker's numbers apart, so that a
#: sweeper that cannot read the broker (it logs why) leaves the last ones standing.
SWEEP_JOB = "stashq-sweep"
QUEUE_JOB = "stashq-queue"


def build_sweep_registry(facts: SweepFacts) -> CollectorRegistry:
    """Sessions by phase and repository locks (group ``SWEEP_JOB``)."""
    registry = CollectorRegistry()
    sessions = Gauge("stashq_sessions", "Sessions in the store, by kind and phase",
                     ("session_kind", "phase"), registry=registry)
    for (kind, phase), count in facts.sessions.items():
        sessions.labels(session_kind=kind, phase=phase).set(count)
    where = ("namespace", "repository")
    held = Gauge("stashq_repository_lock_held_seconds", "How long the oldest live holder "
                 "of the repository's lock has held it; 0 if free", where, registry=registry)
    holders = Gauge("stashq_repository_lock_holders", "Live holders of the repository's lock",
                    where, registry=registry)
    for lock in facts.locks:
        held.labels(lock.namespace, lock.repository).set(lock.held_s)
        holders.labels(lock.namespace, lock.repository).set(lock.holders)
    return registry


def build_queue_registry(queued: Mapping[str, int], unacked: int) -> CollectorRegistry:
    """The broker's queue lengths (group ``QUEUE_JOB``)."""
    registry = CollectorRegistry()
    messages = Gauge("stashq_queue_messages", "Messages waiting in a broker queue",
                     ("queue",), registry=registry)
    for queue, count in queued.items():
        messages.labels(queue=queue).set(count)
    Gauge("stashq_queue_unacked_messages", "Messages a worker took and has not "
          "acknowledged yet (steps running)", registry=registry).set(unacked)
    return registry


ARCHIVE_LABELS = ("namespace", "invoker_name", "repository", "target_name")


@dataclass(frozen=True)
class ArchiveFacts:
    """A BackupConfiguration's binlog archive after a run (its ``binlogArchive`` status)."""

    namespace: str
    configuration: str
    repository: str
    target: str
    status: Mapping[str, Any]

    @property
    def job(self) -> str:
        return f"stashq-binlogarchive-{self.namespace}-{self.configuration}"


def build_archive_registry(facts: ArchiveFacts) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = {"namespace": facts.namespace, "invoker_name": facts.configuration,
              "repository": facts.repository, "target_name": facts.target}

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, ARCHIVE_LABELS, registry=registry).labels(**labels).set(value)

    status = facts.status
    gauge("stashq_binlog_archive_lag_seconds", "Seconds from reading the server's binlog "
          "end to having archived it, at the last run", float(status.get("lagSeconds") or 0))
    gauge("stashq_binlog_archived_bytes", "Bytes of archived binlog segments stored",
          float(status.get("archivedBytes") or 0))
    gaps = status.get("gapCount", len(status.get("gaps") or ()))
    gauge("stashq_binlog_archive_gaps", "Gaps in the binlog archive (every one, not only "
          "those the status lists)", float(gaps))
    gauge("stashq_binlog_archive_last_run_time_seconds", "Unix time of the last archive run",
          _unix(status.get("lastRunAt")))
    if status.get("lastArchivedEventTime"):
        gauge("stashq_binlog_last_archived_event_time_seconds", "Unix time of the last "
              "archived transaction (binlog time, 1 s)", _unix(status["lastArchivedEventTime"]))
    window = status.get("window") or {}
    if window:
        gauge("stashq_binlog_recoverable_from_time_seconds", "Start of the recoverable window",
              _unix(window.get("from")))
        gauge("stashq_binlog_recoverable_to_time_seconds", "End of the recoverable window",
              _unix(window.get("to")))
    return registry


def _unix(text: object) -> float:
    if not isinstance(text, str):
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def push_archive(gateway_url: str, facts: ArchiveFacts) -> None:
    """Push a binlog archive's metrics (``push``'s errors)."""
    with _pushing(gateway_url):
        pushadd_to_gateway(gateway_url, job=facts.job, registry=build_archive_registry(facts),
                           timeout=PUSH_TIMEOUT_S)


def push(gateway_url: str, facts: SessionFacts) -> None:
    """Push the session's metrics; a Pushgateway failure is a StorageError."""
    with _pushing(gateway_url):
        pushadd_to_gateway(gateway_url, job=facts.job, registry=build_registry(facts),
                           timeout=PUSH_TIMEOUT_S)


def push_sweep(gateway_url: str, facts: SweepFacts) -> None:
    """Replace the sweep groups with these numbers; a failure is a StorageError."""
    with _pushing(gateway_url):
        push_to_gateway(gateway_url, job=SWEEP_JOB, registry=build_sweep_registry(facts),
                        timeout=PUSH_TIMEOUT_S)
        if facts.queued is not None and facts.unacked is not None:
            push_to_gateway(gateway_url, job=QUEUE_JOB,
                            registry=build_queue_registry(facts.queued, facts.unacked),
                            timeout=PUSH_TIMEOUT_S)


@contextlib.contextmanager
def _pushing(gateway_url: str) -> Iterator[None]:
    """Translate the client's errors, naming the gateway without its credentials."""
    where = _without_credentials(gateway_url)  # messages end up in session status
    try:
        yield
    except OSError as e:  # URLError and socket errors are OSErrors
        raise TransientStorageError(f"Pushgateway {where} is unreachable: {e}") from e
    except Exception as e:
        raise StorageError(f"Pushgateway {where} refused the metrics: {e}") from e


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def drill_registry(namespace: str, drill: str, report: DrillReport,
                   now: float) -> CollectorRegistry:
    """One configuration's last drill: result, duration, time, and the time of the last
    passed one (absent when this one failed: ``pushadd`` keeps the earlier value)."""
    registry = CollectorRegistry()
    labels = {"namespace": namespace, "drill": drill, "configuration": report.configuration}

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, list(labels), registry=registry).labels(**labels).set(value)

    gauge("stashq_restoredrill_success", "1 if the last drill passed, else 0",
          int(report.passed))
    gauge("stashq_restoredrill_duration_seconds", "Duration of the last drill", report.seconds)
    gauge("stashq_restoredrill_last_time_seconds", "Unix time of the last drill", now)
    if report.passed:
        gauge("stashq_restoredrill_last_success_time_seconds",
              "Unix time of the last passed drill", now)
    return registry


def push_drills(gateway_url: str, namespace: str, drill: str,
                reports: Sequence[DrillReport], *, now: float) -> None:
    """Each drilled configuration's metrics, in a group of its own (drill and
    configuration), so that one configuration's push leaves the others' in place."""
    where = _without_credentials(gateway_url)
    for report in reports:
        try:
            pushadd_to_gateway(gateway_url, job=f"stashq-restoredrill-{namespace}-{drill}",
                               registry=drill_registry(namespace, drill, report, now),
                               grouping_key={"configuration": report.configuration},
                               timeout=PUSH_TIMEOUT_S)
        except OSError as e:
            raise TransientStorageError(f"Pushgateway {where} is unreachable: {e}") from e
