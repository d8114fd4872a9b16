"""Which Events a status patch makes, and what they say: a table of the patches the
writers of a session's status really send (built with their own builders)."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.claims import claim_patch
from workflows.events import (
    MESSAGE_CHARS,
    NORMAL,
    WARNING,
    EventFields,
    event_body,
    told_on_invoker,
    transition_events,
)
from workflows.phases import failed, pending, skipped, succeeded

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
QUEUED = {"phase": "Pending", "queueToken": "t1", "taskId": "t1", "queuedAt": "…"}
REQUEUED = {"queueToken": "t2", "taskId": "t2", "queuedAt": "…", "requeued": 1,
            "lastRequeue": {"at": "…", "by": "host pid 1",
                            "reason": "worker stopped reporting during stashq.dump_upload"}}


@pytest.mark.parametrize(("kind", "patch", "status", "expected"), [
    ("BackupSession", QUEUED, {}, [EventFields("BackupSessionQueued", "queued for a worker")]),
    ("BackupSession", REQUEUED, {}, [EventFields(
        "BackupSessionRequeued", "queued again (1 time(s)): worker stopped reporting during "
        "stashq.dump_upload", WARNING)]),
    ("RestoreSession", claim_patch({"phase": "Pending"}, "t1", "…"), {},
     [EventFields("RestoreSessionRunning", "a worker started the session")]),
    ("BackupSession", succeeded(now=NOW, seconds=12.5), {"snapshot": {"name": "nightly-1"}},
     [EventFields("BackupSessionSucceeded", "succeeded in 12.5 s: snapshot nightly-1")]),
    ("RestoreSession", succeeded(now=NOW, seconds=3.0), {},
     [EventFields("RestoreSessionSucceeded", "succeeded in 3 s")]),
    ("BackupSession", failed("access denied for user 'backup'", now=NOW, step="stashq.precheck"),
     {}, [EventFields("BackupSessionFailed",
                      "failed (step stashq.precheck): access denied for user 'backup'", WARNING)]),
    ("BackupSession", failed("never queued", now=NOW), {},
     [EventFields("BackupSessionFailed", "failed: never queued", WARNING)]),
    ("BackupSession", skipped("BackupSession nightly-0 is still Running", now=NOW), {},
     [EventFields("BackupSessionSkipped", "skipped: BackupSession nightly-0 is still Running",
                  WARNING)]),
    ("BackupConfiguration", {"phase": "Invalid", "reason": "spec.schedule: bad"}, {},
     [EventFields("InvalidBackupConfiguration", "not scheduled: spec.schedule: bad", WARNING)]),
    ("BackupConfiguration", {"phase": "Ready", "reason": None}, {},
     [EventFields("BackupConfigurationReady", "valid; scheduled")]),
    # what moves nothing a person follows makes no Event
    ("BackupSession", pending(), {}, []),
    ("BackupSession", {"heartbeatAt": "…", "heartbeatStep": "stashq.dump_upload"}, {}, []),
    ("BackupSession", {"progress": {"bytes": 1}}, {"phase": "Running"}, []),
    ("BackupSession", {"lateFailure": {"step": "stashq.push_metrics"}}, {}, []),
    ("BackupConfiguration", {"lastScheduleTime": "…", "lastSession": "n-1"}, {}, []),
    ("Repository", {"phase": "Failed"}, {}, []),
])
def test_a_patch_makes_the_events_of_its_transition(
        kind: str, patch: dict[str, Any], status: dict[str, Any],
        expected: list[EventFields]) -> None:
    assert transition_events(kind, patch, {**status, **patch}) == expected


def test_a_long_reason_is_clipped_to_a_readable_message() -> None:
    [event] = transition_events("BackupSession", failed("x" * 5000, now=NOW), {})
    assert len(event.message) == MESSAGE_CHARS and event.message.endswith("…")


def test_the_body_is_a_core_event_about_the_object_kubectl_describe_finds() -> None:
    involved = {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                "metadata": {"name": "nightly-1", "namespace": "demo", "uid": "u-1",
                             "resourceVersion": "7"}}
    fields = told_on_invoker("nightly-1", EventFields("BackupSessionSucceeded", "succeeded"))
    body = event_body(involved, fields, now=NOW, instance="worker-0")
    assert body["metadata"] == {"name": f"nightly-1.{int(NOW * 1e9):x}", "namespace": "demo"}
    assert body["involvedObject"] == {"apiVersion": "stashq.io/v1alpha1",
                                      "kind": "BackupSession", "name": "nightly-1",
                                      "namespace": "demo", "uid": "u-1", "resourceVersion": "7"}
    assert (body["reason"], body["message"], body["type"]) == (
        "BackupSessionSucceeded", "BackupSession nightly-1: succeeded", NORMAL)
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-01-01T00:00:00Z"
    assert body["source"] == {"component": "stashq", "host": "worker-0"}
    long = {**involved, "metadata": {**involved["metadata"], "name": "n" * 253}}
    assert len(event_body(long, fields, now=NOW, instance="w")["metadata"]["name"]) == 253
