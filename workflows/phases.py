"""The session vocabulary every layer shares: phases and the status patches that move a
session between them.

A session's status is written by the CLI, the scheduler, the watcher, the sweeper and
the steps; they must agree on the words and on what a failure records (the reason a
person reads, the step, when), or ``stashq sessions``, the metrics and the history
limit each see a different session. Pure: ``now`` comes in as unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """Stash's BackupSession/RestoreSession phases."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


#: Phases a session never leaves.
FINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.SKIPPED})


def iso_ms(unix: float) -> str:
    """``2025-01-01T03:00:00.123Z``: status times, to the millisecond because durations
    are computed from them (whole seconds overstated short sessions)."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def pending() -> dict[str, Any]:
    """The status a session is created with: waiting to be queued and claimed."""
    return {"phase": Phase.PENDING.value}


def skipped(reason: str, *, now: float) -> dict[str, Any]:
    """The status of a session that will not run (a missed slot, one still running)."""
    return {"phase": Phase.SKIPPED.value, "reason": reason, "completionTime": iso_ms(now),
            "completionTimestamp": now, "conditions": {"BackupSkipped": "True"}}


def succeeded(*, now: float, seconds: float, **extra: Any) -> dict[str, Any]:
    """The patch that ends a session Succeeded after ``seconds``; clears a reason and the
    live progress of its run."""
    return {"phase": Phase.SUCCEEDED.value, "reason": None, "progress": None,
            "sessionDuration": f"{seconds}s", "sessionDurationSeconds": seconds,
            "completionTime": iso_ms(now), "completionTimestamp": now, **extra}


def failed(reason: str, *, now: float, step: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """The patch that ends a session Failed: the reason, the step (None clears an older
    one), when (as text and as unix seconds), and any ``extra`` fields."""
    return {"phase": Phase.FAILED.value, "reason": reason, "failedStep": step,
            "completionTime": iso_ms(now), "completionTimestamp": now, **extra}


def last_backup(session: str, status: Mapping[str, Any]) -> dict[str, Any]:
    """``status.lastBackup`` of a BackupConfiguration whose session ended with ``status``:
    what ``kubectl get backupconfigurations`` shows (time, phase, snapshot, reason)."""
    snapshot = status.get("snapshot")
    return {"session": session, "phase": status.get("phase"),
            "completionTime": status.get("completionTime"),
            "completionTimestamp": status.get("completionTimestamp"),
            "snapshot": snapshot.get("name") if isinstance(snapshot, Mapping) else None,
            "reason": status.get("reason")}


def is_newer_backup(candidate: Mapping[str, Any], current: object) -> bool:
    """Does ``candidate`` (a ``last_backup``) end later than ``current`` (the one the
    configuration shows, if any)? Sessions may finish out of order; the later stays."""
    if not isinstance(current, Mapping):
        return True
    theirs, ours = current.get("completionTimestamp"), candidate.get("completionTimestamp")
    if not isinstance(theirs, int | float) or not isinstance(ours, int | float):
        return True
    return ours >= theirs
