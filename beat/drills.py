"""Scheduling restore drills: each due slot of a RestoreDrill's cron sends one
``stashq.restore_drill`` task, whatever the number of beat replicas.

A drill has no session to create, so the arbiter is its status: a replica moves
``status.scheduledThrough`` from the value it read to the due slot with a conditional
patch (``patch_status_where``), and only the replica whose patch applied sends the task.
A drill seen for the first time starts from now (no slot is replayed); a slot later
than the starting deadline is recorded as missed, not run. The list of drills is read
every ``DRILL_CHECK_S`` (a drill is hours long and minutes apart at most; reading
them every tick would cost one listing per second for nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from beat.clock import Clock, SystemClock
from workers.state.base import ResourceStore
from workflows.errors import InvalidResource
from workflows.resources import RestoreDrill
from workflows.schedule import STARTING_DEADLINE_S, Cron, due_slot, iso_utc

log = logging.getLogger(__name__)

#: Seconds between two looks at the drills' schedules.
DRILL_CHECK_S = 15.0

Send = Callable[[str, str], object]  #: (namespace, name) → the task sent


class DrillScheduler:
    """``maybe_tick()`` in beat's loop; ``tick(now)`` decides and sends."""

    def __init__(self, store: ResourceStore, send: Send, *, clock: Clock | None = None,
                 namespace: str | None = None, check_s: float = DRILL_CHECK_S,
                 starting_deadline_s: float = STARTING_DEADLINE_S) -> None:
        self.store, self.send, self.clock = store, send, clock or SystemClock()
        self.namespace, self.check_s = namespace, check_s
        self.starting_deadline_s = starting_deadline_s
        self._next = 0.0

    def maybe_tick(self) -> None:
        """``tick`` once ``check_s`` has passed; never raises (logged, tried next time)."""
        now = self.clock.now()
        if now < self._next:
            return
        self._next = now + self.check_s
        try:
            self.tick(now)
        except Exception:
            log.exception("restore drills not scheduled this time; trying again")

    def tick(self, now: float) -> int:
        """Send every drill whose slot is due; how many this replica sent."""
        sent = 0
        for drill in self.store.list(RestoreDrill, self.namespace):
            try:
                sent += self._handle(drill, now)
            except InvalidResource as e:
                log.error("RestoreDrill %s/%s not scheduled: %s", drill.namespace, drill.name,
                          e)
            except Exception:
                log.exception("RestoreDrill %s/%s: slot not handled; trying again",
                              drill.namespace, drill.name)
        return sent

    def _handle(self, drill: RestoreDrill, now: float) -> int:
        spec = drill.spec
        if not spec.schedule or spec.paused:
            return 0
        cron = Cron(spec.schedule, spec.time_zone)
        through = drill.status.get("scheduledThrough")
        if not isinstance(through, int | float):  # first sight: from now on
            self._advance(drill, through, {"scheduledThrough": int(now)})
            return 0
        due = due_slot(cron, after=through, now=now,
                       starting_deadline_s=self.starting_deadline_s)
        if due is None:
            return 0
        patch: dict[str, Any] = {"scheduledThrough": due.slot,
                                 "nextScheduleTime": iso_utc(due.next_slot)}
        if due.runs:
            patch["lastScheduleTime"] = iso_utc(due.slot)
        if due.missed:
            patch["lastMissed"] = {"count": due.missed, "noticedAt": iso_utc(now)}
        if not self._advance(drill, through, patch) or not due.runs:
            return 0
        log.info("RestoreDrill %s/%s: slot %s, drill sent", drill.namespace, drill.name,
                 iso_utc(due.slot))
        self.send(drill.namespace, drill.name)
        return 1

    def _advance(self, drill: RestoreDrill, seen: object, patch: dict[str, Any]) -> bool:
        """Move ``scheduledThrough`` on from ``seen``; False if another replica did."""
        return self.store.patch_status_where(RestoreDrill, drill.name, drill.namespace,
                                             {"scheduledThrough": seen}, patch) is not None
