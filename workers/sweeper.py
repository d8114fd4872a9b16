"""The stale-session sweeper: no session stays Running after its worker is gone.

A worker killed mid-step (``kill -9``, out of memory, a lost node) leaves its session
Running and its message unacknowledged in Redis, which hands it out again only after
the visibility timeout (hours: it must exceed the longest backup). Meanwhile the
session's heartbeat (``workers/heartbeat.py``) goes quiet, and this sweeper, run by
every worker (at start-up, then every ``stale_sweep_interval_s``) and by every beat,
acts on it as ``workflows/staleness.py`` decides:

- **queue it again**, up to ``stale_requeue_limit`` times: the whole chain is sent
  anew and every step is idempotent per session (pre-check runs again, ``dump_upload``
  finds the finished snapshot or aborts the half-written upload and dumps again);
- then **fail it**, with a reason naming the step and the time it went quiet.

When the original message comes back after the visibility timeout, its steps find the
session final, or queued again under another token, and stop (``workers/steps/session.py``).

The same sweep finds sessions Pending for longer than ``pending_timeout_s``: if the
broker still holds their message they wait for a worker (their status says so), if it
lost it they are queued again under a new token, within the same limit, then failed.

The hard part is doing it once with many sweepers: each takes a short lease on the
session (``sweep:<session>``) and reads the status again under it before acting; the
action itself refreshes ``requeuedAt``, so the next sweeper finds the session alive.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from workers.broker import queued_tokens
from workers.context import SESSION_KINDS, SessionRef, StepContext
from workers.heartbeat import worker_name
from workers.history import record_last_backup
from workers.logs import session_context
from workers.queueing import queue_chain
from workers.session_metrics import push_session_metrics
from workers.state import open_store
from workers.state.base import STORE_SOURCE, ResourceStore
from workers.steps.session import CONTROL_QUEUE, DATA_QUEUE, now_iso, send_post_hooks
from workers.sweep_metrics import every_phase, push_sweep_metrics
from workflows.errors import InvalidResource, NotFound, StashQError
from workflows.manifests import load_json
from workflows.phases import Phase, failed
from workflows.settings import Settings
from workflows.staleness import StaleVerdict, pending_overdue, pending_verdict, stale_verdict

log = logging.getLogger(__name__)


class StaleSweeper:
    """Finds stale Running sessions and queues them again or fails them."""

    def __init__(self, app: Any, store: ResourceStore, settings: Settings, *,
                 namespace: str | None = None, clock: Callable[[], float] = time.time,
                 reads_queues: bool = True) -> None:
        self.app, self.store, self.settings = app, store, settings
        self.namespace, self.clock = namespace, clock
        #: Push the broker's queue lengths with the sweep metrics: False for a beat on
        #: Kubernetes, which has no broker (the watcher queues).
        self.reads_queues = reads_queues
        self._next_sweep = 0.0
        self._phases: dict[tuple[str, str], int] = {}  #: sessions by kind and phase, last sweep

    # --- when -------------------------------------------------------------------------

    def maybe_sweep(self) -> None:
        """Sweep if ``stale_sweep_interval_s`` passed since the last sweep (beat's tick)."""
        interval_s = self.settings.stale_sweep_interval_s
        if interval_s <= 0 or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + interval_s
        self.sweep_safely()

    def run(self, stop: threading.Event) -> None:
        """Sweep now, then every ``stale_sweep_interval_s`` until ``stop`` (a worker)."""
        self.sweep_safely()
        interval_s = self.settings.stale_sweep_interval_s
        while interval_s > 0 and not stop.wait(interval_s):
            self.sweep_safely()

    def sweep_safely(self) -> list[tuple[SessionRef, StaleVerdict]]:
        try:
            return self.sweep()
        except Exception as e:  # the store may be restarting: the next sweep will do
            log.warning("stale-session sweep failed: %s: %s", type(e).__name__, e)
            return []

    # --- what -------------------------------------------------------------------------

    def sweep(self) -> list[tuple[SessionRef, StaleVerdict]]:
        """One pass over every Running and Pending session; return what was done to which."""
        done = []
        found, pending = self.stale_sessions()
        push_sweep_metrics(self.app if self.reads_queues else None, self.store, self.settings,
                           self.namespace, self._phases)
        queued = queued_tokens(self.app, (CONTROL_QUEUE, DATA_QUEUE)) if pending else None
        for ref in found:
            with session_context(ref.name):
                try:
                    verdict = self.handle(ref, queued)
                except NotFound:  # deleted since it was listed (with its configuration)
                    log.info("%s: deleted while being swept", ref)
                    continue
                except Exception:  # this session's trouble must not spare the others
                    log.exception("%s: stale, but could not be handled", ref)
                    continue
            if verdict is not None:
                done.append((ref, verdict))
        return done

    def stale_sessions(self) -> tuple[list[SessionRef], bool]:
        """Sessions to look at, and whether any is Pending (the broker must be read)."""
        now, found, pending = self.clock(), [], False
        counted: Counter[tuple[str, str]] = Counter()
        for kind, cls in SESSION_KINDS.items():
            for namespace, name, status in self._statuses(cls):
                counted[kind, str(status.get("phase") or Phase.PENDING)] += 1
                overdue = pending_overdue(status, now=now,
                                          timeout_s=self.settings.pending_timeout_s)
                if overdue or self._verdict(status, now, None) is not None:
                    found.append(SessionRef(kind, namespace, name))
                    pending = pending or overdue
        self._phases = every_phase(list(SESSION_KINDS), counted) | dict(counted)
        return found, pending

    def _statuses(self, cls: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for obj in self.store.list_raw(cls, self.namespace):  # one bad object hides none
            try:
                status = load_json(obj.status, source=STORE_SOURCE) if obj.status else {}
            except InvalidResource:
                continue
            if isinstance(status, dict):
                yield obj.namespace, obj.name, status

    def _verdict(self, status: dict[str, Any], now: float,
                 queued: set[str] | None) -> StaleVerdict | None:
        settings = self.settings
        if status.get("phase") == Phase.PENDING:
            token = status.get("queueToken")
            return pending_verdict(status, now=now, timeout_s=settings.pending_timeout_s,
                                   requeue_limit=settings.stale_requeue_limit,
                                   message_queued=None if queued is None or token is None
                                   else token in queued)
        return stale_verdict(status, now=now, timeout_s=settings.heartbeat_timeout_s,
                             requeue_limit=settings.stale_requeue_limit)

    def handle(self, ref: SessionRef, queued: set[str] | None = None) -> StaleVerdict | None:
        """Under the session's sweep lease, with its status read again: act on it.
        ``queued``: the queue tokens the broker holds (None: unknown)."""
        with self._claim(ref) as claimed:
            if not claimed:
                return None
            status = self.store.get(ref.cls, ref.name, ref.namespace).status
            verdict = self._verdict(status, self.clock(), queued)
            if verdict is None:
                return None
            # Each action holds only while nobody claimed or queued the session since.
            seen = {"phase": status.get("phase"), "queueToken": status.get("queueToken")}
            if verdict.action == "wait":
                log.info("%s: %s", ref, verdict.reason)
                self._patch(ref, {"waiting": verdict.reason, "waitingCheckedAt": now_iso()},
                            seen)
            elif verdict.action == "requeue":
                log.warning("%s: %s", ref, verdict.reason)
                self.requeue(ref, verdict, seen)
            else:
                log.warning("%s: %s", ref, verdict.reason)
                self.fail(ref, verdict.reason, status.get("heartbeatStep"), seen)
            return verdict

    @contextlib.contextmanager
    def _claim(self, ref: SessionRef) -> Iterator[bool]:
        store = self.store
        lock, token = f"sweep:{ref}", secrets.token_hex(8)
        answer = store.acquire_lease(lock, token, {"owner": worker_name(), "purpose": "sweep"},
                                     exclusive=True,
                                     lease_s=float(self.settings.heartbeat_timeout_s))
        try:
            yield answer.acquired
        finally:
            if answer.acquired:
                store.release_lease(lock, token)

    def requeue(self, ref: SessionRef, verdict: StaleVerdict,
                seen: dict[str, Any] | None = None) -> None:
        """Send the session's whole chain again under a new queue token (a copy of the
        old message that still turns up stops: superseded); fail it if that is impossible.
        ``seen``: status fields that must still hold (else someone else acted: nothing)."""
        ctx = StepContext(self.settings, self.store, ref)
        try:
            token = queue_chain(self.app, self.store, ref, ctx.plan, expect=seen,
                                requeued=verdict.requeued, requeuedAt=now_iso(), waiting=None,
                                lastRequeue={"at": now_iso(), "by": worker_name(),
                                             "reason": verdict.reason})
        except StashQError as e:
            self.fail(ref, f"{verdict.reason}, but it cannot be queued: {e.reason}", None)
            return
        except Exception as e:
            self.fail(ref, f"{verdict.reason}, but it could not be queued: "
                           f"{type(e).__name__}: {e}", None)
            return
        if token is None:
            log.info("%s changed while being queued again; left to whoever changed it", ref)
            return
        log.info("%s queued again (%d of %d)", ref, verdict.requeued,
                 self.settings.stale_requeue_limit)

    def fail(self, ref: SessionRef, reason: str, step: object,
             seen: dict[str, Any] | None = None) -> None:
        status = self._patch(ref, failed(reason, now=self.clock(), waiting=None,
                                         step=step if isinstance(step, str) else None), seen)
        if status is None:
            log.info("%s changed while being failed; left to whoever changed it", ref)
            return
        ctx = StepContext(self.settings, self.store, ref)
        record_last_backup(ctx, status)
        try:
            push_session_metrics(ctx, status)
        except Exception as e:  # the failure is recorded; the metric is a bonus
            log.warning("metrics of failed %s not pushed: %s", ref, e)
        send_post_hooks(self.app, ctx)  # its chain is gone: OnFailure hooks run from here

    def _patch(self, ref: SessionRef, patch: dict[str, Any],
               seen: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Patch the status; with ``seen``, only while those fields hold (else None)."""
        if seen is None:
            return self.store.patch_status(ref.cls, ref.name, ref.namespace, patch)
        return self.store.patch_status_where(ref.cls, ref.name, ref.namespace, seen, patch)


_STOP_ATTR = "stashq_sweeper_stop"


def start_in_worker(sender: Any = None, **_: Any) -> None:
    """``worker_ready`` handler: sweep at start-up, then periodically, in a thread of the
    worker's main process (the pool's children run steps, not this)."""
    app = sender.app
    settings: Settings = app.stashq_settings
    stop = threading.Event()
    setattr(app, _STOP_ATTR, stop)
    sweeper = StaleSweeper(app, open_store(settings), settings)
    threading.Thread(target=sweeper.run, args=(stop,), daemon=True,
                     name="stashq stale sweeper").start()


def stop_in_worker(sender: Any = None, **_: Any) -> None:
    """``worker_shutdown`` handler."""
    stop = getattr(getattr(sender, "app", None), _STOP_ATTR, None)
    if isinstance(stop, threading.Event):
        stop.set()
