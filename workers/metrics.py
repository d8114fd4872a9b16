"""Prometheus metrics pushed to a Pushgateway after each session.

Names mirror Stash's under a ``stashq_`` prefix, so dashboards port with a rename.
One group per invoker (job ``stashq-<kind>-<namespace>-<name>``); ``pushadd`` keeps
``last_success_time_seconds`` from an earlier success when a later session fails.
prometheus_client is imported here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

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
        gauge("stashq_repository_snapshot_count", "Snapshots in the repository",
              float(repo.get("snapshotCount", 0)))
    return registry


def push(gateway_url: str, facts: SessionFacts) -> None:
    """Push the session's metrics; a Pushgateway failure is a StorageError."""
    where = _without_credentials(gateway_url)  # messages end up in session status
    try:
        pushadd_to_gateway(gateway_url, job=facts.job, registry=build_registry(facts),
                           timeout=PUSH_TIMEOUT_S)
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
