"""Cron slots and session names: when a configuration is due, decided from values.

A scheduled slot of configuration ``nightly`` at unix time T becomes BackupSession
``nightly-T``; a second scheduler replica computing the same slot collides on the name
(``SET NX`` / ``409 AlreadyExists``) instead of starting a second backup.

Slots are computed by croniter in the configuration's ``spec.timeZone``, and daylight
saving time is what croniter makes of it (pinned by tests): a time inside the
spring-forward gap fires at the first instant after it (``30 2 * * *`` in Europe/Berlin
fires at 03:00 CEST that day), and a time inside the repeated fall-back hour fires
twice (02:30 CEST, then 02:30 CET).

Missed slots follow CronJob's ``startingDeadlineSeconds``: of the slots that passed
while no scheduler looked, only the latest may still run, and only if it is at most the
deadline late; the others are counted, never replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from workflows.errors import InvalidResource
from workflows.phases import Phase
from workflows.resources import BackupConfiguration

#: Kubernetes names are at most 253 characters; leave room for "-<unix time>".
MAX_CONFIG_NAME_CHARS = 253 - 11
#: Slots counted one by one after a downtime; beyond this the count is a lower bound
#: (CronJob stops counting at 100 too) and the latest slot is found directly.
MAX_COUNTED_SLOTS = 100
#: Answers a Cron remembers before it forgets them all (each a few dozen bytes).
MEMO_SLOTS = 4096
#: CronJob's usual ``startingDeadlineSeconds``: a slot found later than this is not run.
STARTING_DEADLINE_S = 300.0
#: Seconds ahead that ``interval_s`` looks for the longest gap between slots: a week and
#: a day, so a weekday-only schedule's weekend gap is seen wherever the look starts.
INTERVAL_HORIZON_S = 8 * 24 * 3600
#: Slots ``interval_s`` steps through at most (an every-minute schedule reaches this in
#: 33 hours, and its gaps are all equal).
INTERVAL_MAX_SLOTS = 2000

def session_name(config: str, slot_unix: int) -> str:
    return f"{config[:MAX_CONFIG_NAME_CHARS]}-{slot_unix}"


def slot_of_session(config: str, session: str) -> int | None:
    """The slot in a name ``session_name(config, slot)`` made; None for any other name.

    ``nightly-db-1700000000`` is not a session of ``nightly``: what follows the prefix
    must be digits only.
    """
    prefix = f"{config[:MAX_CONFIG_NAME_CHARS]}-"
    rest = session.removeprefix(prefix)
    if rest == session or not (rest.isascii() and rest.isdigit()):
        return None
    return int(rest)


def configuration_of_session(session: str) -> str | None:
    """The configuration in a name ``session_name(config, slot)`` made; None for another.

    ``nightly-db-1700000000`` → ``nightly-db``; ``adhoc`` → None.
    """
    config, _, slot = session.rpartition("-")
    return config if config and slot.isascii() and slot.isdigit() else None


def iso_utc(unix: float) -> str:
    """``2025-01-01T03:00:00Z``: how statuses spell a time."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Cron:
    """One schedule in one time zone, answering "which slot comes after t?".

    Raises ``InvalidResource`` naming ``spec.schedule`` or ``spec.timeZone``. A value:
    the same question always gets the same answer, so answers are remembered. Not safe
    to share between threads: it reuses one croniter, positioned afresh by each call
    (parsing the expression costs ~4x a step).
    """

    def __init__(self, schedule: str, time_zone: str = "UTC") -> None:
        self.schedule, self.time_zone = schedule, time_zone
        try:
            self.zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidResource(f'"{time_zone}" is not a known time zone',
                                  path="spec.timeZone") from None
        #: Answers of next_after: configurations sharing a schedule ask the same question
        #: at the same slot (1,500 of them at the top of the hour, in the benchmark).
        self._next: dict[int, int] = {}
        try:
            self._iter = croniter(schedule, datetime.fromtimestamp(0, self.zone))
        except ValueError as e:  # croniter's errors are ValueErrors
            raise InvalidResource(f'"{schedule}" is not a cron expression ({e})',
                                  path="spec.schedule") from None

    def __repr__(self) -> str:
        return f"Cron({self.schedule!r}, {self.time_zone!r})"

    def next_after(self, t: float) -> int:
        """The first slot strictly after unix time ``t``."""
        start = math.floor(t)  # slots are whole seconds
        if (known := self._next.get(start)) is not None:
            return known
        if len(self._next) >= MEMO_SLOTS:
            self._next.clear()
        self._next[start] = slot = self._step(start, previous=False)
        return slot

    def latest_until(self, t: float) -> int:
        """The last slot at or before unix time ``t``."""
        return self._step(math.floor(t) + 1, previous=True)

    def _step(self, t: int, *, previous: bool) -> int:
        try:
            self._iter.set_current(datetime.fromtimestamp(t, self.zone), force=True)
            slot = self._iter.get_prev(float) if previous else self._iter.get_next(float)
        except ValueError:  # CroniterBadDateError: no such date within croniter's search
            direction = "before" if previous else "after"
            raise InvalidResource(f'"{self.schedule}" has no slot {direction} {iso_utc(t)}',
                                  path="spec.schedule") from None
        return int(slot)


def interval_s(cron: Cron, after: float) -> float:
    """The longest gap between two consecutive slots in the ``INTERVAL_HORIZON_S`` after
    ``after``, in seconds: "a backup is overdue" means longer than this without one.

    The longest, not the usual: ``0 3 * * 1-5`` has a 72 h gap each weekend, and an
    alert on 1.5 x 24 h would fire every Sunday.
    """
    slot = cron.next_after(after)
    longest, horizon = 0, slot + INTERVAL_HORIZON_S
    for _ in range(INTERVAL_MAX_SLOTS):
        following = cron.next_after(slot)
        longest = max(longest, following - slot)
        if following > horizon:
            break
        slot = following
    return float(longest)


def cron_of(config: BackupConfiguration) -> Cron | None:
    """The configuration's schedule, or None if it has none (manual backups only)."""
    spec = config.spec
    return Cron(spec.schedule, spec.time_zone) if spec.schedule else None


@dataclass(frozen=True)
class Due:
    """A configuration's slots that passed since the scheduler last handled it."""

    slot: int  #: the latest slot at or before now: the only one that may run
    late_s: float  #: how long ago ``slot`` was
    runs: bool  #: ``slot`` is within the starting deadline
    missed: int  #: passed slots that get no backup: the older ones, and ``slot`` if late
    capped: bool  #: more than MAX_COUNTED_SLOTS passed; ``missed`` is a lower bound
    next_slot: int  #: the first slot after now


def due_slot(cron: Cron, *, after: float, now: float,
             starting_deadline_s: float = STARTING_DEADLINE_S,
             first_slot: int | None = None) -> Due | None:
    """What passed in ``(after, now]``; None if no slot did.

    ``first_slot`` is ``cron.next_after(after)`` if the caller knows it already.
    """
    slot = cron.next_after(after) if first_slot is None else first_slot
    if slot > now:
        return None
    older, capped = 0, False
    while (following := cron.next_after(slot)) <= now:
        older += 1
        if older == MAX_COUNTED_SLOTS:  # a long downtime: jump instead of counting on
            slot, capped = cron.latest_until(now), True
            following = cron.next_after(slot)
            break
        slot = following
    late_s = now - slot
    runs = late_s <= starting_deadline_s
    return Due(slot=slot, late_s=late_s, runs=runs, missed=older + (not runs),
               capped=capped, next_slot=following)


def session_verdict(due: Due, *, busy: tuple[str, str] | None,
                    starting_deadline_s: float = STARTING_DEADLINE_S) -> tuple[Phase, str | None]:
    """The phase the slot's session starts in, and why if it is Skipped.

    ``busy`` is ``(name, phase)`` of the configuration's unfinished session, if any:
    overlapping backups of one database are never started (Stash issue #1137).
    """
    if not due.runs:
        return Phase.SKIPPED, (f"missed: the slot of {iso_utc(due.slot)} was reached "
                           f"{due.late_s:.0f}s late, past the starting deadline of "
                           f"{starting_deadline_s:.0f}s (was the scheduler stopped?)")
    if busy is not None:
        return Phase.SKIPPED, f'the previous session "{busy[0]}" is still {busy[1]}'
    return Phase.PENDING, None
