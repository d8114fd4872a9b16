"""Stale sessions and retry backoff: tables of cases over plain values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.backoff import retry_delay_s
from workflows.errors import InvalidResource
from workflows.settings import Settings
from workflows.staleness import last_sign_of_life, pending_verdict, stale_verdict

#: 2025-01-01T12:00:00Z
T0 = 1735732800.0
RUNNING = {"phase": "Running", "startTime": "2025-01-01T11:00:00Z",
           "heartbeatAt": "2025-01-01T11:59:00Z", "heartbeatStep": "stashq.dump_upload"}


@pytest.mark.parametrize(("status", "now", "expected"), [
    (RUNNING, T0, None),                                      # 60 s quiet: fine
    (RUNNING, T0 + 240, None),                                # exactly the timeout: fine
    (RUNNING, T0 + 241, ("requeue", 1)),
    (RUNNING | {"requeued": 1}, T0 + 241, ("requeue", 2)),
    (RUNNING | {"requeued": 2}, T0 + 241, ("fail", 2)),
    (RUNNING | {"phase": "Succeeded"}, T0 + 9999, None),      # only Running is judged
    (RUNNING | {"phase": "Pending"}, T0 + 9999, None),
    ({"phase": "Running"}, T0 + 9999, None),                  # no time at all: cannot judge
    # a retry waiting for its time is a sign of life until then
    (RUNNING | {"retry": {"timestamp": T0 + 600}}, T0 + 700, None),
    (RUNNING | {"retry": {"timestamp": T0 + 600}}, T0 + 901, ("requeue", 1)),
    # a re-queue counts as life: the new run gets its own timeout
    (RUNNING | {"requeued": 1, "requeuedAt": "2025-01-01T12:05:00Z"}, T0 + 400, None),
    # no heartbeat yet (written by an older version): the start time counts
    ({"phase": "Running", "startTime": "2025-01-01T11:00:00Z"}, T0, ("requeue", 1)),
])
def test_stale_verdict(status: dict[str, object], now: float,
                       expected: tuple[str, int] | None) -> None:
    verdict = stale_verdict(status, now=now, timeout_s=300, requeue_limit=2)
    assert (verdict and (verdict.action, verdict.requeued)) == expected


PENDING = {"phase": "Pending", "queuedAt": "2025-01-01T12:00:00.000Z", "queueToken": "t"}


@pytest.mark.parametrize(("status", "now", "queued", "expected"), [
    (PENDING, T0 + 180, False, None),                         # exactly the bound: fine
    (PENDING, T0 + 181, False, ("requeue", 1)),               # message lost
    (PENDING | {"requeued": 1}, T0 + 181, False, ("requeue", 2)),
    (PENDING | {"requeued": 2}, T0 + 181, False, ("fail", 2)),
    (PENDING, T0 + 181, True, ("wait", 0)),                   # no worker: never a copy
    (PENDING | {"requeued": 2}, T0 + 9999, True, ("wait", 2)),
    (PENDING, T0 + 181, None, ("requeue", 1)),                # broker unreadable: bounded
    (PENDING | {"requeued": 2}, T0 + 181, None, ("fail", 2)),
    ({"phase": "Pending"}, T0 + 9999, False, None),           # never queued: the watcher's
    (PENDING | {"phase": "Running"}, T0 + 9999, False, None),
    (PENDING | {"phase": "Skipped"}, T0 + 9999, False, None),
])
def test_pending_verdict(status: dict[str, object], now: float, queued: bool | None,
                         expected: tuple[str, int] | None) -> None:
    verdict = pending_verdict(status, now=now, timeout_s=180, requeue_limit=2,
                              message_queued=queued)
    assert (verdict and (verdict.action, verdict.requeued)) == expected


def test_pending_reasons_say_what_happened() -> None:
    lost = pending_verdict(PENDING | {"requeued": 2}, now=T0 + 600, timeout_s=180,
                           requeue_limit=2, message_queued=False)
    assert lost is not None and lost.reason == (
        "queued at 2025-01-01T12:00:00Z and not started for 600 s; its message is no "
        "longer on the broker (lost: a Redis without persistence restarted or was "
        "emptied?); re-queued 2 time(s), never started")
    waiting = pending_verdict(PENDING, now=T0 + 600, timeout_s=180, requeue_limit=2,
                              message_queued=True)
    assert waiting is not None and waiting.reason.startswith(
        "waiting for a worker: queued at 2025-01-01T12:00:00Z and not started for 600 s; "
        "its message is still on the queue")


def test_reasons_name_the_step_and_the_time_it_went_quiet() -> None:
    requeue = stale_verdict(RUNNING, now=T0 + 400, timeout_s=300, requeue_limit=1)
    fail = stale_verdict(RUNNING | {"requeued": 1}, now=T0 + 400, timeout_s=300,
                         requeue_limit=1)
    assert requeue is not None and fail is not None
    assert requeue.reason == ("worker stopped reporting during stashq.dump_upload at "
                              "2025-01-01T11:59:00Z; queued again (1 of 1)")
    assert fail.reason == ("worker stopped reporting during stashq.dump_upload at "
                           "2025-01-01T11:59:00Z; re-queued 1 time(s)")


def test_a_session_requeued_but_never_started_says_so() -> None:
    status = RUNNING | {"requeued": 1, "requeuedAt": "2025-01-01T12:05:00Z"}
    verdict = stale_verdict(status, now=T0 + 700, timeout_s=300, requeue_limit=1)
    assert verdict is not None and verdict.reason == (
        "worker stopped reporting during stashq.dump_upload at 2025-01-01T11:59:00Z; queued "
        "again at 2025-01-01T12:05:00Z, no worker has reported since; re-queued 1 time(s)")


def test_limit_zero_fails_at_once() -> None:
    verdict = stale_verdict(RUNNING, now=T0 + 400, timeout_s=300, requeue_limit=0)
    assert verdict is not None and verdict.action == "fail"
    assert verdict.reason.endswith("re-queued 0 time(s)")


def test_unreadable_times_are_ignored() -> None:
    assert last_sign_of_life({"heartbeatAt": "yesterday", "startTime": 12}) == 12.0
    assert last_sign_of_life({"retry": "soon", "heartbeatAt": True}) is None


@pytest.mark.parametrize(("done", "expected"), [
    (0, 30.0), (1, 60.0), (2, 120.0), (3, 240.0), (4, 480.0), (5, 600.0), (500, 600.0),
])
def test_retry_delay_doubles_up_to_the_cap(done: int, expected: float) -> None:
    assert retry_delay_s(done, base_s=30, max_s=600) == expected


@given(st.integers(min_value=0, max_value=10_000), st.floats(0.01, 1e4), st.floats(0.01, 1e5))
def test_retry_delay_never_exceeds_the_cap_nor_shrinks(done: int, base_s: float,
                                                        max_s: float) -> None:
    delay = retry_delay_s(done, base_s=base_s, max_s=max_s)
    assert delay <= max_s and delay <= retry_delay_s(done + 1, base_s=base_s, max_s=max_s)


def test_retry_delay_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        retry_delay_s(-1, base_s=1, max_s=2)


def test_settings_read_seconds_as_numbers() -> None:
    settings = Settings.from_env({"STASHQ_HEARTBEAT_INTERVAL_S": "0.5",
                                  "STASHQ_STALE_REQUEUE_LIMIT": "3",
                                  "STASHQ_PAUSE_AT": "before_manifest:30"})
    assert settings.heartbeat_interval_s == 0.5 and settings.stale_requeue_limit == 3
    assert settings.pause_at == "before_manifest:30"
    with pytest.raises(InvalidResource, match="STASHQ_RETRY_BASE_S: \"soon\" is not a number"):
        Settings.from_env({"STASHQ_RETRY_BASE_S": "soon"})
