"""The cron source: each due slot of a BackupConfiguration becomes one BackupSession.

Exactly once without leader election: the session of a slot is named
``<config>-<slot unix time>`` and the store's create (``SET NX`` / ``409``) decides which
beat replica made it. Only that replica queues it and records the slot in the
configuration's status; the others just move on. Every replica computes the same
slots from the same values, so any of them may stop at any time (Stash #1505).

The loop is kopf's shape: ``run`` is a trivial loop over ``tick`` with an
``_iterations`` hook, and the clock is a parameter, so tests move time instead of
sleeping. Each tick refreshes the configurations (``configurations.py``: what was
applied, changed or deleted is seen within one tick), then lists sessions only if a
slot is due or the history sweep is. The sessions of all due slots are created in one
batch, so at the top of the hour the last of thousands is as early as the first.

Beat must never die of one resource: a bad configuration is reported and skipped
(``configurations.py``), and any error while handling one configuration is logged and
retried at the next tick.

Each loop also gives the stale-session sweeper (``workers/sweeper.py``, passed in as
``sweeper``) its turn; it keeps its own interval and the wall clock, since heartbeats
are written by workers on real time, whatever clock drives the slots.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from beat.archiving import ArchiveSource, Send
from beat.clock import Clock, SystemClock
from beat.configurations import (
    SOURCE,
    ConfigKey,
    Configurations,
    Entry,
    located,
    schedule_id,
)
from beat.dispatch import backup_session, queue_or_fail
from workers.context import SessionRef
from workers.logs import session_context
from workers.state.base import RawObject, ResourceStore
from workflows.errors import InvalidResource
from workflows.manifests import load_json
from workflows.phases import FINAL_PHASES, Phase, failed, last_backup, pending, skipped
from workflows.resources import BackupConfiguration, BackupSession
from workflows.retention import finished_time, sessions_beyond_limit
from workflows.schedule import (
    STARTING_DEADLINE_S,
    Cron,
    Due,
    due_slot,
    iso_utc,
    session_verdict,
    slot_of_session,
)

log = logging.getLogger(__name__)

#: Seconds between ticks at most: what is applied, changed or deleted is seen within one.
TICK_S = 1.0
#: Seconds between sweeps of finished sessions beyond ``backupHistoryLimit``. A sweep
#: lists every session, so it rides along with a tick that lists them anyway (one with
#: slots due) once half of this has passed.
HISTORY_EVERY_S = 60.0
#: Seconds after its slot a never-queued Pending session counts as orphaned (its beat
#: stopped between create and queue) and is failed instead of blocking later slots.
ORPHAN_AFTER_S = 300.0


@dataclass(frozen=True)
class SlotPlan:
    """A due slot's session, decided before any is created."""

    key: ConfigKey
    entry: Entry
    due: Due
    phase: str
    reason: str | None
    session: BackupSession


@dataclass(frozen=True)
class SessionView:
    """The few fields of a stored BackupSession that scheduling reads."""

    namespace: str
    name: str
    config: str
    phase: str
    finished_at: float | None
    queued: bool

    @classmethod
    def from_raw(cls, obj: RawObject) -> SessionView | None:
        try:
            body = load_json(obj.body, source=SOURCE)
            status = load_json(obj.status, source=SOURCE) if obj.status else {}
            config = str(body["spec"]["invoker"]["name"])
            phase = str(status.get("phase") or Phase.PENDING)  # created, status not yet written
        except (InvalidResource, KeyError, TypeError, AttributeError):
            return None  # not ours to judge; it neither blocks nor counts
        finished = finished_time(status, slot_of_session(config, obj.name))
        queued = any(status.get(k) for k in ("queuedAt", "taskId", "claim"))  # claim: watcher
        return cls(obj.namespace, obj.name, config, phase, finished, queued)


class Scheduler:
    """Turns due slots into sessions; ``dispatch`` queues a created Pending one."""

    def __init__(self, store: ResourceStore, dispatch: Callable[[SessionRef], object], *,
                 clock: Clock | None = None, namespace: str | None = None,
                 starting_deadline_s: float = STARTING_DEADLINE_S, tick_s: float = TICK_S,
                 history_every_s: float = HISTORY_EVERY_S,
                 orphan_after_s: float = ORPHAN_AFTER_S,
                 sweeper: Callable[[], object] | None = None,
                 archive: Send | None = None,
                 drills: Callable[[], object] | None = None) -> None:
        self.store, self.dispatch = store, dispatch
        self.clock = clock or SystemClock()
        self.namespace, self.starting_deadline_s = namespace, starting_deadline_s
        self.tick_s, self.history_every_s = tick_s, history_every_s
        self.orphan_after_s = orphan_after_s
        self.sweeper = sweeper
        self.drills = drills  #: ``beat/drills.py``: restore drills on their own schedules
        self.configs = Configurations(store, namespace)
        #: Binlog archive runs, one per archiving configuration and interval slot.
        self.archives = ArchiveSource(store, archive) if archive is not None else None
        self._soonest = math.inf  #: the earliest slot still ahead after the last tick
        self._views: dict[tuple[str, str], tuple[bytes, bytes | None, SessionView | None]] = {}
        self._next_sweep = 0.0
        self._last_error = ""
        self._stopping = threading.Event()
        self._frozen = False

    # --- the loop -------------------------------------------------------------------

    def run(self, *, _iterations: int | None = None) -> None:
        """Tick until ``stop()``; ``_iterations`` bounds the ticks (for tests)."""
        where = f'namespace "{self.namespace}"' if self.namespace else "every namespace"
        log.info("beat started: %s, tick %.1fs, starting deadline %.0fs", where, self.tick_s,
                 self.starting_deadline_s)
        while not self._stopping.is_set() and (_iterations is None or _iterations > 0):
            if _iterations is not None:
                _iterations -= 1
            started = self.clock.now()
            if self.tick_safely() or not self._frozen:
                self._settle_memory()
            if self.sweeper is not None:
                self.sweeper()  # it never raises: a failed sweep is logged and retried
            if self.drills is not None:
                self.drills()  # nor does this
            self.clock.sleep(self._pause(started))
        log.info("beat stopped")

    def _settle_memory(self) -> None:
        """Collect, then exempt the survivors from future collections.

        Beat's state (configurations, sessions seen) lives long; left to the cyclic GC,
        every full collection walks all of it, a 100-150 ms pause at 10,000
        configurations in the middle of some tick. Done here, after a tick that created
        sessions, the collection only walks what is new since the last time.
        """
        gc.collect()
        gc.freeze()
        self._frozen = True

    def stop(self) -> None:
        self._stopping.set()
        self.configs.feed.stop()

    def tick_safely(self) -> int:
        """``tick``, with any error logged (its traceback once) instead of raised."""
        try:
            created = self.tick()
        except Exception as e:
            message = f"{type(e).__name__}: {e}"
            if message != self._last_error:
                log.exception("tick failed; retrying every %.1fs", self.tick_s)
            else:
                log.error("tick failed again: %s", message)
            self._last_error = message
            return 0
        self._last_error = ""
        return created

    def _pause(self, started: float) -> float:
        """Until the next tick is due or the soonest slot comes, whichever is first."""
        now = self.clock.now()
        return max(0.0, min(self.tick_s - (now - started), self._soonest - now))

    def tick(self) -> int:
        """One pass over every configuration; return how many sessions this beat created."""
        now = self.clock.now()
        self.configs.refresh(now)
        if self.archives is not None:
            self.archives.tick(self.configs.entries, now)
        due, soonest = [], math.inf
        for key, entry in self.configs.entries.items():
            if entry.next_slot <= now:
                due.append((key, entry))
            elif entry.next_slot < soonest:
                soonest = entry.next_slot
        self._soonest = soonest
        sweep = now >= self._next_sweep - (self.history_every_s / 2 if due else 0)
        if not due and not sweep:
            return 0
        sessions = self._sessions()
        created = self._handle_due(due, now, sessions)
        ahead = [entry.next_slot for _, entry in due if entry.next_slot > now]  # failed: next tick
        self._soonest = min([self._soonest, *ahead])
        if sweep:
            self._sweep(sessions)
            self._next_sweep = now + self.history_every_s
        return created

    # --- due configurations: decide each, create all at once, then queue and record ----

    def _handle_due(self, due: list[tuple[ConfigKey, Entry]], now: float,
                    sessions: dict[ConfigKey, list[SessionView]]) -> int:
        """Create the sessions of every due slot in one batch (at the top of the hour a
        third of all configurations are due), then queue them and record the slots."""
        plans: list[SlotPlan] = []
        for key, entry in due:
            with self._guard(key, entry):
                if (plan := self._plan(key, entry, now, sessions)) is not None:
                    plans.append(plan)
        created = self._create([plan.session for plan in plans])
        count = 0
        for plan, made in zip(plans, created, strict=True):
            with self._guard(plan.key, plan.entry):
                count += self._settle(plan, made, now, sessions)
        return count

    @contextlib.contextmanager
    def _guard(self, key: ConfigKey, entry: Entry) -> Iterator[None]:
        """One configuration's failure is logged (reported, if the configuration is at
        fault), never raised: the others go on."""
        try:
            with session_context(f"{key[0]}/{key[1]}"):
                yield
        except InvalidResource as e:  # e.g. a cron that has no more slots
            entry.error, entry.next_slot = located(e, key[1]), math.inf
            self.configs.report(key, entry)
        except Exception:
            log.exception("BackupConfiguration %s/%s: slot not handled; retrying next tick",
                          *key)

    def _plan(self, key: ConfigKey, entry: Entry, now: float,
              sessions: dict[ConfigKey, list[SessionView]]) -> SlotPlan | None:
        """The session the due slot gets, or None (nothing due, or paused)."""
        assert entry.config is not None and entry.cron is not None
        due = due_slot(entry.cron, after=entry.after, now=now,
                       starting_deadline_s=self.starting_deadline_s,
                       first_slot=int(entry.next_slot))
        if due is None:
            entry.next_slot = entry.cron.next_after(entry.after)
            return None
        if entry.config.spec.paused:
            self._patch_config(key, progress(entry.cron, due))  # same values on every replica
            entry.after, entry.next_slot = due.slot, due.next_slot
            log.info("paused: slot %s not run", iso_utc(due.slot))
            return None
        busy = self._busy(sessions.get(key, []), now)
        phase, reason = session_verdict(due, busy=busy,
                                        starting_deadline_s=self.starting_deadline_s)
        session = backup_session(key[1], key[0], due.slot,
                                 session_status(phase, reason, due.slot, now), owner=entry.config)
        return SlotPlan(key, entry, due, phase, reason, session)

    def _create(self, sessions: list[BackupSession]) -> list[bool | None]:
        """Create each session; None where creating failed (its slot is tried next tick)."""
        if not sessions:
            return []
        try:
            return list(self.store.create_many(sessions))
        except Exception:
            log.exception("could not create %d session(s); retrying next tick", len(sessions))
            return [None] * len(sessions)

    def _settle(self, plan: SlotPlan, created: bool | None, now: float,
                sessions: dict[ConfigKey, list[SessionView]]) -> int:
        """After the create: only the replica that created the session queues it and
        records the slot in the configuration's status."""
        if created is None:
            return 0
        key, entry, due, name = plan.key, plan.entry, plan.due, plan.session.name
        entry.after, entry.next_slot = due.slot, due.next_slot  # decided, whatever follows
        if not created:
            log.debug("BackupSession %s was created by another beat", name)
            return 0
        log.info("created BackupSession %s/%s: %s%s", key[0], name, plan.phase,
                 f" ({plan.reason})" if plan.reason else "")
        sessions.setdefault(key, []).append(SessionView(
            key[0], name, key[1], plan.phase, now if plan.phase == Phase.SKIPPED else None, False))
        if plan.phase == Phase.PENDING:
            self._queue(SessionRef("BackupSession", key[0], name), now)
        self._patch_config(key, self._record(plan, now))
        return 1

    def _patch_config(self, key: ConfigKey, patch: dict[str, Any]) -> None:
        self.store.patch_status(BackupConfiguration, key[1], key[0], patch)

    def _busy(self, views: list[SessionView], now: float) -> tuple[str, str] | None:
        """The configuration's unfinished session, failing orphans on the way."""
        for view in views:
            if view.phase in FINAL_PHASES:
                continue
            slot = slot_of_session(view.config, view.name)
            if (view.phase == Phase.PENDING and not view.queued and slot is not None
                    and now - slot > self.orphan_after_s):
                self._fail_orphan(view, now)
                continue
            return view.name, view.phase
        return None

    def _fail_orphan(self, view: SessionView, now: float) -> None:
        log.error("BackupSession %s/%s was never queued; marking it Failed", view.namespace,
                  view.name)
        self.store.patch_status(BackupSession, view.name, view.namespace, failed(
            "never queued: the scheduler that created it stopped before queuing it", now=now))

    def _queue(self, ref: SessionRef, now: float) -> None:
        queue_or_fail(self.dispatch, self.store, ref)

    def _record(self, plan: SlotPlan, now: float) -> dict[str, Any]:
        """The configuration's status after its slot got a session (by this replica)."""
        due, config = plan.due, plan.entry.config
        assert plan.entry.cron is not None and config is not None
        patch = progress(plan.entry.cron, due) | {"lastScheduleTime": iso_utc(due.slot),
                                                  "lastSession": plan.session.name}
        if plan.phase == Phase.SKIPPED:  # the newest slot: nothing ends later
            patch["lastBackup"] = last_backup(plan.session.name, plan.session.status)
        if due.missed:  # the status as it is now: another replica may have counted before
            current = self.store.get(BackupConfiguration, config.name, config.namespace)
            missed = current.status.get("missedSlots")
            patch["missedSlots"] = (missed if isinstance(missed, int) else 0) + due.missed
            patch["lastMissed"] = {"count": due.missed, "atLeast": due.capped,
                                   "noticedAt": iso_utc(now)}
        return patch

    # --- sessions: listing and history --------------------------------------------

    def _sessions(self) -> dict[ConfigKey, list[SessionView]]:
        """Every BackupSession by configuration, parsed again only when its bytes changed."""
        views: dict[tuple[str, str], tuple[bytes, bytes | None, SessionView | None]] = {}
        by_config: dict[ConfigKey, list[SessionView]] = {}
        for obj in self.store.list_raw(BackupSession, self.namespace):
            key = (obj.namespace, obj.name)
            cached = self._views.get(key)
            if cached is not None and cached[0] == obj.body and cached[1] == obj.status:
                view = cached[2]
            else:
                view = SessionView.from_raw(obj)
            views[key] = (obj.body, obj.status, view)
            if view is not None:
                by_config.setdefault((obj.namespace, view.config), []).append(view)
        self._views = views
        return by_config

    def _sweep(self, sessions: dict[ConfigKey, list[SessionView]]) -> None:
        """Delete finished sessions beyond each configuration's ``backupHistoryLimit``."""
        for key, views in sessions.items():
            entry = self.configs.entries.get(key)
            if entry is None or entry.config is None:
                continue  # a deleted or unreadable configuration: its history stays
            limit = entry.config.spec.backup_history_limit
            finished = [(v.name, v.finished_at or 0.0) for v in views if v.phase in FINAL_PHASES]
            if len(finished) <= limit:
                continue
            for name in sessions_beyond_limit(finished, limit):
                try:
                    self.store.delete(BackupSession, name, key[0])
                except Exception:
                    log.exception("could not delete BackupSession %s/%s", key[0], name)
                    continue
                log.info("deleted BackupSession %s/%s: beyond backupHistoryLimit %d", key[0],
                         name, limit)


def progress(cron: Cron, due: Due) -> dict[str, Any]:
    """How far the configuration is scheduled: every replica writes the same values."""
    return {"scheduledThrough": due.slot, "scheduledCron": schedule_id(cron),
            "nextScheduleTime": iso_utc(due.next_slot)}


def session_status(phase: str, reason: str | None, slot: int, now: float) -> dict[str, Any]:
    """The status a slot's session is created with."""
    status = skipped(str(reason), now=now) if phase == Phase.SKIPPED else pending()
    return status | {"scheduleTime": iso_utc(slot)}
