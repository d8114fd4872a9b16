"""Who may run a session: the claim decision over plain statuses."""

from __future__ import annotations

import pytest

from workflows.claims import claim_decision, claim_patch

QUEUED = {"phase": "Pending", "queueToken": "t1"}


@pytest.mark.parametrize(("status", "token", "action"), [
    (QUEUED, "t1", "claim"),                                   # the first step
    (QUEUED | {"phase": "Running", "claimedBy": "t1"}, "t1", "proceed"),  # a later step
    (QUEUED, "t0", "stop"),                                    # the original of a re-queue
    (QUEUED | {"phase": "Running", "claimedBy": "t0"}, "t0", "stop"),
    # a stale Running session queued again: the new queueing takes it over
    (QUEUED | {"phase": "Running", "claimedBy": "t0"}, "t1", "claim"),
    (QUEUED | {"phase": "Succeeded", "claimedBy": "t1"}, "t1", "stop"),
    (QUEUED | {"phase": "Failed"}, "t1", "stop"),
    ({"phase": "Skipped"}, "t1", "stop"),
    # statuses from before queue tokens: whoever comes claims, as before
    ({"phase": "Pending"}, "t9", "claim"),
    ({"phase": "Running", "claimedBy": "t8"}, "t9", "claim"),
    ({}, "t9", "claim"),
])
def test_claim_decision(status: dict[str, object], token: str, action: str) -> None:
    assert claim_decision(status, token).action == action


def test_a_claim_is_conditioned_on_what_it_read() -> None:
    status = QUEUED | {"phase": "Running", "claimedBy": "t0", "heartbeatAt": "x"}
    decision = claim_decision(status, "t1")
    assert decision.expect == {"phase": "Running", "queueToken": "t1", "claimedBy": "t0"}


def test_a_superseded_message_says_by_what() -> None:
    assert claim_decision(QUEUED, "t0").reason == (
        "superseded: the session was queued again (queueing t1); this message (t0) is a "
        "stale copy")


def test_a_claim_keeps_the_first_start_time() -> None:
    now = "2025-01-01T12:00:00.000Z"
    assert claim_patch({"startTime": "2025-01-01T11:00:00Z"}, "t1", now)["startTime"] \
        == "2025-01-01T11:00:00Z"
    assert claim_patch({}, "t1", now) == {"phase": "Running", "claimedBy": "t1",
                                          "claimedAt": now, "startTime": now,
                                          "waiting": None}
