"""Cron slots, missed slots and session names: tables of cases, then properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.errors import InvalidResource
from workflows.schedule import (
    MAX_COUNTED_SLOTS,
    Cron,
    Due,
    due_slot,
    interval_s,
    iso_utc,
    session_name,
    session_verdict,
    slot_of_session,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo | None = None) -> float:
    """Unix time of ``2025-10-26T02:30`` in ``zone`` (UTC if none), or of an offset time."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone or UTC)
    return moment.timestamp()


def slots(cron: Cron, start: float, count: int) -> list[str]:
    out, t = [], start
    for _ in range(count):
        t = cron.next_after(t)
        out.append(datetime.fromtimestamp(t, cron.zone).isoformat())
    return out


@pytest.mark.parametrize(("schedule", "zone", "start", "expected"), [
    ("0 3 * * *", "UTC", "2025-01-01T03:00:00+00:00",           # strictly after a slot
     ["2025-01-02T03:00:00+00:00", "2025-01-03T03:00:00+00:00"]),
    ("*/15 * * * *", "UTC", "2025-01-01T00:07:59+00:00",
     ["2025-01-01T00:15:00+00:00", "2025-01-01T00:30:00+00:00"]),
    ("0 9 * * 1", "Asia/Kolkata", "2025-01-01T00:00:00+00:00",  # Mondays, +05:30
     ["2025-01-06T09:00:00+05:30", "2025-01-13T09:00:00+05:30"]),
    ("0 0 29 2 *", "UTC", "2025-03-01T00:00:00+00:00",           # leap days only
     ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]),
    ("* * * * * 30", "UTC", "2025-01-01T00:00:00+00:00",         # croniter's seconds field
     ["2025-01-01T00:00:30+00:00", "2025-01-01T00:01:30+00:00"]),
    # Spring forward in Berlin (02:00 CET → 03:00 CEST): 02:30 does not exist that day,
    # croniter fires at the first instant after the gap.
    ("30 2 * * *", "Europe/Berlin", "2025-03-29T12:00:00+01:00",
     ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]),
    ("0 * * * *", "Europe/Berlin", "2025-03-30T00:30:00+01:00",
     ["2025-03-30T01:00:00+01:00", "2025-03-30T03:00:00+02:00"]),
    # Fall back (03:00 CEST → 02:00 CET): 02:30 happens twice, and croniter fires twice.
    ("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00:00+02:00",
     ["2025-10-26T02:30:00+02:00", "2025-10-26T02:30:00+01:00", "2025-10-27T02:30:00+01:00"]),
    ("0 * * * *", "Europe/Berlin", "2025-10-26T01:30:00+02:00",
     ["2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00", "2025-10-26T03:00:00+01:00"]),
])
def test_next_slots(schedule: str, zone: str, start: str, expected: list[str]) -> None:
    assert slots(Cron(schedule, zone), at(start), len(expected)) == expected


def test_latest_until_includes_a_slot_exactly_now_and_sees_both_fall_back_slots() -> None:
    cron = Cron("30 2 * * *", "Europe/Berlin")
    second = at("2025-10-26T02:30:00+01:00")
    assert cron.latest_until(second) == second
    assert cron.latest_until(second - 1) == at("2025-10-26T02:30:00+02:00")


@pytest.mark.parametrize(("schedule", "zone", "path", "reason"), [
    ("61 * * * *", "UTC", "spec.schedule", '"61 * * * *" is not a cron expression'),
    ("every day", "UTC", "spec.schedule", '"every day" is not a cron expression'),
    ("* * * * *", "Mars/Olympus", "spec.timeZone", '"Mars/Olympus" is not a known time zone'),
    ("0 0 31 2 *", "UTC", "spec.schedule", '"0 0 31 2 *" has no slot after'),  # valid, never
])
def test_bad_schedules_name_the_field(schedule: str, zone: str, path: str, reason: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        Cron(schedule, zone).next_after(at("2025-01-01T00:00:00"))
    assert caught.value.path == path and reason in caught.value.detail


MINUTELY = Cron("* * * * *")
T0 = at("2025-01-01T12:00:00")  # a slot of MINUTELY


@pytest.mark.parametrize(("after", "now", "deadline", "expected"), [
    # Nothing passed yet.
    (T0, T0 + 59, 300, None),
    # The next slot, on time: it runs, nothing missed.
    (T0, T0 + 60.4, 300, Due(T0 + 60, 0.4, True, 0, False, T0 + 120)),
    # Beat was down for 10 minutes: the latest runs (40 s late), the 9 before are missed.
    (T0, T0 + 640, 300, Due(T0 + 600, 40, True, 9, False, T0 + 660)),
    # ... with a deadline of 30 s even the latest is too late: 10 missed, none runs.
    (T0, T0 + 640, 30, Due(T0 + 600, 40, False, 10, False, T0 + 660)),
    # Exactly at the deadline still runs (CronJob: "not later than").
    (T0, T0 + 90, 30, Due(T0 + 60, 30, True, 0, False, T0 + 120)),
    # A day down: counting stops at MAX_COUNTED_SLOTS, the latest slot is still found.
    (T0, T0 + 86400 + 5, 300,
     Due(T0 + 86400, 5, True, MAX_COUNTED_SLOTS, True, T0 + 86400 + 60)),
])
def test_due_slot(after: float, now: float, deadline: float, expected: Due | None) -> None:
    due = due_slot(MINUTELY, after=after, now=now, starting_deadline_s=deadline)
    if expected is None or due is None:
        assert due == expected
    else:
        assert due.late_s == pytest.approx(expected.late_s)
        assert replace(due, late_s=0) == replace(expected, late_s=0)


def test_due_slot_sees_the_repeated_fall_back_hour_as_two_slots() -> None:
    hourly = Cron("0 * * * *", "Europe/Berlin")
    due = due_slot(hourly, after=at("2025-10-26T01:30:00+02:00"),
                   now=at("2025-10-26T02:10:00+01:00"), starting_deadline_s=3600)
    assert due is not None
    assert due.slot == at("2025-10-26T02:00:00+01:00") and due.missed == 1


def late(seconds: float, *, runs: bool = True) -> Due:
    return Due(slot=int(T0), late_s=seconds, runs=runs, missed=0, capped=False,
               next_slot=int(T0) + 60)


@pytest.mark.parametrize(("due", "busy", "phase", "reason"), [
    (late(0.5), None, "Pending", None),
    (late(0.5), ("nightly-1", "Running"), "Skipped",
     'the previous session "nightly-1" is still Running'),
    (late(400, runs=False), ("nightly-1", "Running"), "Skipped",
     "missed: the slot of 2025-01-01T12:00:00Z was reached 400s late, past the starting "
     "deadline of 300s (was the scheduler stopped?)"),
])
def test_session_verdict(due: Due, busy: tuple[str, str] | None, phase: str,
                         reason: str | None) -> None:
    assert session_verdict(due, busy=busy, starting_deadline_s=300) == (phase, reason)


@pytest.mark.parametrize(("config", "session", "slot"), [
    ("nightly", "nightly-1700000000", 1700000000),
    ("nightly", "nightly-db-1700000000", None),     # another configuration's session
    ("nightly", "nightly-", None),
    ("nightly", "nightly-12a", None),
    ("nightly", "nightly-١٢", None),               # digits, but not ASCII ones
    ("nightly", "weekly-1700000000", None),
    ("a" * 250, "a" * 242 + "-5", 5),                # long names are cut, as session_name does
])
def test_slot_of_session(config: str, session: str, slot: int | None) -> None:
    assert slot_of_session(config, session) == slot


def test_iso_utc() -> None:
    assert iso_utc(T0) == "2025-01-01T12:00:00Z"


names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)


@given(names, st.integers(min_value=0, max_value=2**33))
def test_session_names_round_trip(config: str, slot: int) -> None:
    assert slot_of_session(config, session_name(config, slot)) == slot


SCHEDULES = ["* * * * *", "*/7 * * * *", "5,35 * * * *", "0 */3 * * *", "15 4 * * 1-5",
             "0 0 1 * *", "30 2 * * *"]
ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns"]  # whole, half-hour, DST at 2:00 local
times = st.floats(min_value=at("2024-01-01T00:00:00"), max_value=at("2027-01-01T00:00:00"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCHEDULES), st.sampled_from(ZONES), times)
def test_next_after_and_latest_until_bracket_t(schedule: str, zone: str, t: float) -> None:
    cron = Cron(schedule, zone)
    following, latest = cron.next_after(t), cron.latest_until(t)
    assert latest <= t < following
    assert cron.next_after(latest) == following  # no slot between them
    assert croniter.match(schedule, datetime.fromtimestamp(following, cron.zone))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SCHEDULES[:4]), times, st.integers(min_value=0, max_value=6 * 3600),
       st.sampled_from([0.0, 59.0, 300.0]))
def test_due_slot_matches_counting_every_minute(schedule: str, after: float, span_s: int,
                                                deadline: float) -> None:
    """Reference: walk the minutes of (after, now] and ask croniter.match for each."""
    now = after + span_s
    first_minute = int(after) // 60 * 60 + 60
    passed = [m for m in range(first_minute, int(now) + 1, 60)
              if croniter.match(schedule, datetime.fromtimestamp(m, UTC))]
    due = due_slot(Cron(schedule), after=after, now=now, starting_deadline_s=deadline)
    if not passed:
        assert due is None
        return
    assert due is not None and due.slot == passed[-1]
    assert due.runs == (now - passed[-1] <= deadline)
    if len(passed) <= MAX_COUNTED_SLOTS:
        assert not due.capped and due.missed == len(passed) - 1 + (not due.runs)
    else:
        assert due.capped and MAX_COUNTED_SLOTS <= due.missed < len(passed) + 1
    assert due.next_slot > now


# --- the interval an overdue alert compares against ------------------------------------

INTERVALS = [
    ("* * * * *", "UTC", 60),
    ("*/15 * * * *", "UTC", 900),
    ("0 3 * * *", "UTC", 24 * 3600),
    ("0 3 * * *", "Europe/Berlin", 25 * 3600),  # the night the clocks go back
    ("0 3 * * 1-5", "UTC", 72 * 3600),  # Friday to Monday, whichever day it starts
    ("0 9-17 * * *", "UTC", 16 * 3600),  # the night between office hours
    ("30 2 1 * *", "UTC", 30 * 24 * 3600),  # monthly: November, seen past the horizon
]


@pytest.mark.parametrize("schedule, zone, expected", INTERVALS,
                         ids=[f"{s} {z}" for s, z, _ in INTERVALS])
def test_the_interval_is_the_longest_gap_between_slots(schedule: str, zone: str,
                                                       expected: int) -> None:
    # Mid-October 2025: Berlin's clocks go back on the 26th, within the horizon.
    assert interval_s(Cron(schedule, zone), at("2025-10-20T12:00")) == expected
    assert interval_s(Cron(schedule, zone), at("2025-10-24T12:00")) == expected
