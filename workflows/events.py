"""Kubernetes Events for status transitions, so that ``kubectl describe`` tells the story.

Every writer of a session's status (the scheduler, the watcher, the sweeper, the steps)
goes through the store's status patch; the Kubernetes store turns each patch into the
Events of the transition it makes, as Stash emits them: a reason in CamelCase prefixed
with the kind (``BackupSessionSucceeded``), a message a person reads, ``Normal`` or
``Warning``. A patch that moves nothing a person cares about (a heartbeat, progress)
makes none. A backup session's transitions are told on its BackupConfiguration too,
naming the session, as the CronJob controller tells a Job's story on the CronJob.

The hard part is deciding from the patch alone (the store must not read before every
write): a queue token with a requeue record is a requeue, a queue token alone a
queueing, a phase is the phase it names. Pure: time comes in as unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workflows.phases import Phase

NORMAL = "Normal"
WARNING = "Warning"
#: Who reports the Events (``source.component``, ``reportingComponent``).
COMPONENT = "stashq"
#: Characters of a message kept (events.k8s.io/v1 refuses a note over 1 KiB; the same
#: bound here keeps an Event readable in ``kubectl describe``; the log has the rest).
MESSAGE_CHARS = 1024
#: Characters of an Event's name: the involved object's name, a dot, 16 hex digits.
NAME_CHARS = 253
#: Kinds whose status transitions are sessions' (queued, running, final phases).
SESSION_KINDS = frozenset({"BackupSession", "RestoreSession"})


@dataclass(frozen=True)
class EventFields:
    """What an Event says: ``reason`` (CamelCase), ``message``, ``type``."""

    reason: str
    message: str
    type: str = NORMAL


def transition_events(kind: str, patch: Mapping[str, Any],
                      status: Mapping[str, Any]) -> list[EventFields]:
    """The Events a status ``patch`` of an object of ``kind`` makes (often none);
    ``status`` is the status after it, for the details the patch does not repeat."""
    if kind in SESSION_KINDS:
        fields = session_event(kind, patch, status)
    elif kind == "BackupConfiguration":
        fields = configuration_event(patch)
    else:
        fields = None
    return [fields] if fields is not None else []


def session_event(kind: str, patch: Mapping[str, Any],
                  status: Mapping[str, Any]) -> EventFields | None:
    """A session's transition: queued, requeued, running, succeeded, failed, skipped."""
    phase = patch.get("phase")
    if patch.get("queueToken") and patch.get("lastRequeue"):
        requeue = patch.get("lastRequeue") or {}
        why = requeue.get("reason") if isinstance(requeue, Mapping) else None
        return EventFields(f"{kind}Requeued", _clip(
            f"queued again ({patch.get('requeued', '?')} time(s)): {why or 'no reason given'}"),
            WARNING)
    if patch.get("queueToken"):
        return EventFields(f"{kind}Queued", "queued for a worker")
    if phase == Phase.RUNNING and patch.get("claimedBy"):
        return EventFields(f"{kind}Running", "a worker started the session")
    if phase == Phase.SUCCEEDED:
        return EventFields(f"{kind}Succeeded", _succeeded_message({**status, **patch}))
    if phase == Phase.FAILED:
        step = patch.get("failedStep")
        where = f" (step {step})" if step else ""
        return EventFields(f"{kind}Failed",
                           _clip(f"failed{where}: {patch.get('reason') or 'no reason given'}"),
                           WARNING)
    if phase == Phase.SKIPPED:
        return EventFields(f"{kind}Skipped",
                           _clip(f"skipped: {patch.get('reason') or 'no reason given'}"),
                           WARNING)
    return None


def configuration_event(patch: Mapping[str, Any]) -> EventFields | None:
    """A BackupConfiguration's own transition: found invalid, or valid again."""
    phase = patch.get("phase")
    if phase == "Invalid":
        return EventFields("InvalidBackupConfiguration",
                           _clip(f"not scheduled: {patch.get('reason')}"), WARNING)
    if phase == "Ready":
        return EventFields("BackupConfigurationReady", "valid; scheduled")
    return None


def told_on_invoker(session: str, fields: EventFields) -> EventFields:
    """A session's Event as its BackupConfiguration tells it: naming the session."""
    return EventFields(fields.reason, _clip(f"BackupSession {session}: {fields.message}"),
                       fields.type)


def event_body(involved: Mapping[str, Any], fields: EventFields, *, now: float,
               instance: str) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` (an object as the API returned it: apiVersion,
    kind, metadata with name, namespace, uid), named as client-go's recorder names them."""
    metadata = involved.get("metadata") or {}
    name, namespace = str(metadata.get("name") or ""), str(metadata.get("namespace") or "")
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")
    suffix = f".{int(now * 1e9):x}"
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name[:NAME_CHARS - len(suffix)] + suffix,
                     "namespace": namespace},
        "involvedObject": {"apiVersion": involved.get("apiVersion"),
                           "kind": involved.get("kind"), "name": name,
                           "namespace": namespace, "uid": metadata.get("uid"),
                           "resourceVersion": metadata.get("resourceVersion")},
        "reason": fields.reason, "message": fields.message, "type": fields.type,
        "source": {"component": COMPONENT, "host": instance},
        "reportingComponent": COMPONENT, "reportingInstance": instance,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


def _succeeded_message(status: Mapping[str, Any]) -> str:
    seconds = status.get("sessionDurationSeconds")
    took = f" in {seconds:g} s" if isinstance(seconds, int | float) else ""
    snapshot = status.get("snapshot")
    name = snapshot.get("name") if isinstance(snapshot, Mapping) else None
    return f"succeeded{took}" + (f": snapshot {name}" if name else "")


def _clip(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[:MESSAGE_CHARS - 1] + "…"
