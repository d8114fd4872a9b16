"""When a Running session counts as abandoned, and what to do about it.

A step's worker writes ``status.heartbeatAt`` while it runs (``workers/heartbeat.py``).
A worker that is killed, loses its node or hangs stops writing it; a session whose
last sign of life is older than the timeout is stale. The verdict is to queue it again
(steps are idempotent per session: the re-run finds a finished snapshot or starts the
dump over) up to a limit, then to fail it with a reason a person can act on (Stash
issues #1488, #889: sessions stuck in Running for ever).

A Pending session has no heartbeat; its sign of life is its message on the broker's
queue. One that stays Pending for longer than its bound either waits for a worker
(the message is still queued: say so in the status, queue nothing) or lost its message
(a Redis without persistence restarted: queue it again, within the same limit, then
fail it saying what happened; Stash issues #1488, #1522: sessions Pending for days).

Pure: the status and ``now`` (unix seconds) in, the verdict out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from workflows.phases import Phase
from workflows.schedule import iso_utc

#: Status fields that prove a session was alive at their time, newest wins. A retry
#: scheduled for later (``retry.timestamp``) counts: nobody beats while it waits.
_ISO_FIELDS = ("heartbeatAt", "requeuedAt", "startTime")


@dataclass(frozen=True)
class StaleVerdict:
    action: Literal["requeue", "fail", "wait"]
    reason: str
    requeued: int  #: times the session was queued again, this action included


def unix_time(value: object) -> float | None:
    """An ISO time (``...Z``) or a number as unix seconds; None if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def last_sign_of_life(status: Mapping[str, Any]) -> float | None:
    """The latest moment the session was known to be in hand, in unix seconds."""
    times = [unix_time(status.get(name)) for name in _ISO_FIELDS]
    retry = status.get("retry")
    if isinstance(retry, Mapping):
        times.append(unix_time(retry.get("timestamp")))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def stale_verdict(status: Mapping[str, Any], *, now: float, timeout_s: float,
                  requeue_limit: int) -> StaleVerdict | None:
    """None unless the session is Running and silent for longer than ``timeout_s``."""
    if status.get("phase") != Phase.RUNNING:
        return None
    last = last_sign_of_life(status)
    if last is None or now - last <= timeout_s:
        return None
    step = status.get("heartbeatStep") or "an unknown step"
    requeued = times_requeued(status)
    beat = unix_time(status.get("heartbeatAt")) or unix_time(status.get("startTime")) or last
    silent = f"worker stopped reporting during {step} at {iso_utc(beat)}"
    queued_again = unix_time(status.get("requeuedAt"))
    if queued_again is not None and queued_again > beat:
        silent += f"; queued again at {iso_utc(queued_again)}, no worker has reported since"
    if requeued < requeue_limit:
        return StaleVerdict("requeue", f"{silent}; queued again ({requeued + 1} of "
                                       f"{requeue_limit})", requeued + 1)
    return StaleVerdict("fail", f"{silent}; re-queued {requeued} time(s)", requeued)


def times_requeued(status: Mapping[str, Any]) -> int:
    raw = status.get("requeued")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else 0


def pending_overdue(status: Mapping[str, Any], *, now: float, timeout_s: float) -> bool:
    """Queued, still Pending, and for longer than ``timeout_s``?"""
    queued_at = unix_time(status.get("queuedAt"))
    return (status.get("phase") == Phase.PENDING and queued_at is not None
            and now - queued_at > timeout_s)


def pending_verdict(status: Mapping[str, Any], *, now: float, timeout_s: float,
                    requeue_limit: int, message_queued: bool | None) -> StaleVerdict | None:
    """None unless ``pending_overdue``; ``message_queued``: is the session's message still
    on the broker (None: the broker could not tell)?"""
    if not pending_overdue(status, now=now, timeout_s=timeout_s):
        return None
    queued_at = unix_time(status.get("queuedAt")) or now
    requeued = times_requeued(status)
    since = f"queued at {iso_utc(queued_at)} and not started for {now - queued_at:.0f} s"
    if message_queued:
        return StaleVerdict("wait", f"waiting for a worker: {since}; its message is still "
                                    "on the queue, so no worker is consuming it (start one: "
                                    "stashq worker)", requeued)
    lost = ("its message is no longer on the broker (lost: a Redis without persistence "
            "restarted or was emptied?)" if message_queued is False
            else "the broker's queues could not be read")
    if requeued < requeue_limit:
        return StaleVerdict("requeue", f"{since}; {lost}; queued again ({requeued + 1} of "
                                       f"{requeue_limit})", requeued + 1)
    return StaleVerdict("fail", f"{since}; {lost}; re-queued {requeued} time(s), never "
                                "started", requeued)
