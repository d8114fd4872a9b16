"""The frame around every step: context, logging, heartbeats, retries, a final phase.

A session must always reach a final phase with a reason (Stash issues #1488, #889):
any exception in a step marks the session Failed with a sentence a person can act on
(our own errors carry one; anything else gets a generic reason and a logged
traceback), then re-raises so the chain stops.

Around that, the frame

- does nothing for a session already final (a redelivered message, a duplicate queued
  by the stale-session sweeper): the chain stops there, so a late message can neither
  take a second snapshot nor turn Failed into Succeeded or back. Steps that run after
  the final phase is written (``push_metrics``) say so with ``after_final``;
- lets only the session's current queueing run it: the first step claims the session
  (Pending → Running, conditioned on the status it read), a copy of a message that was
  queued again finds itself superseded and stops (``workflows/claims.py``);
- keeps ``status.heartbeatAt`` fresh while the step runs (``workers/heartbeat.py``);
- stops quietly when the session itself was deleted while a step ran (on Kubernetes,
  deleting a configuration deletes its sessions): there is no status left to write;
- retries a step that failed with a ``Transient`` error (S3 unreachable, a busy lock)
  with exponential backoff (``workflows/backoff.py``), recording ``status.retry``, and
  fails the session only when the retries are used up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore, Retry

from workers.context import SessionRef, StepContext
from workers.heartbeat import heartbeat
from workers.history import prune_history, record_last_backup
from workers.logs import session_context
from workers.session_metrics import push_session_metrics
from workers.state import open_store
from workers.state.base import ResourceStore
from workflows.backoff import retry_delay_s
from workflows.claims import claim_decision, claim_patch
from workflows.errors import NotFound, StashQError, Transient
from workflows.hooks import POST_HOOK_STEP, POST_OF
from workflows.params import parse_params
from workflows.phases import FINAL_PHASES, failed, iso_ms
from workflows.schedule import iso_utc

log = logging.getLogger(__name__)

#: Times a claim reads the status again after a concurrent write changed what it read.
CLAIM_ATTEMPTS = 3
#: Queue for steps that move data (dump, upload, restore) vs quick control steps.
DATA_QUEUE = "stashq.data"
CONTROL_QUEUE = "stashq.control"

#: Celery task name → queue, filled as steps register; becomes ``task_routes``.
ROUTES: dict[str, dict[str, str]] = {}

#: A step: the context and its params, typed (``workflows/params.py``).
StepFunction = Callable[[StepContext, Any], None]


def now_iso() -> str:
    return iso_ms(time.time())


def session_step(name: str, *, queue: str = CONTROL_QUEUE,
                 after_final: bool = False) -> Callable[[StepFunction], Any]:
    """Register ``fn(ctx, params)`` as the Celery task ``name``.

    ``after_final``: the step also runs for a session already Succeeded or Failed (it
    follows the step that writes the final phase); other steps stop the chain there.
    """

    ROUTES[name] = {"queue": queue}

    def register(fn: StepFunction) -> Any:
        @shared_task(name=name, bind=True, acks_late=True,  # type: ignore[untyped-decorator]
                     reject_on_worker_lost=True)
        def step(self: Any, ref: str, params: Mapping[str, str]) -> None:
            ctx = StepContext(self.app.stashq_settings, app_store(self.app), SessionRef.parse(ref))
            with session_context(ctx.ref.name):
                run_step(self, ctx, name, fn, params, after_final=after_final)

        step.__doc__ = fn.__doc__
        return step

    return register


def run_step(task: Any, ctx: StepContext, name: str, fn: StepFunction,
             params: Mapping[str, str], *, after_final: bool) -> None:
    """The frame: phase guard, heartbeat, retry on transient errors, failure record."""
    phase = None
    try:
        phase = ctx.session.status.get("phase")
        if not after_final:
            phase = claim(ctx, name, str(task.request.root_id or task.request.id))
        log.info("step %s started", name)
        typed = parse_params(name, params)
        with heartbeat(lambda patch: set_status(ctx, patch), name,
                       ctx.settings.heartbeat_interval_s, now_iso):
            fn(ctx, typed)
    except Ignore:
        log.info("step %s: nothing left to do, chain stopped", name)
        raise
    except Exception as e:
        if isinstance(e, NotFound) and session_gone(ctx):
            log.warning("step %s: %s was deleted while it ran (with its BackupConfiguration, "
                        "or by hand); nothing to record, chain stopped", name, ctx.ref)
            raise Ignore() from None
        retries = int(task.request.retries or 0)
        if isinstance(e, Transient) and retries < ctx.settings.retry_limit:
            retry_later(task, ctx, name, e, retries)
        if phase in FINAL_PHASES or (after_final and phase is None):  # the phase stands
            record_late_failure(ctx, name, e, retries=retries)
        else:
            record_failure(ctx, name, e, retries=retries)
            send_post_hooks(task.app, ctx)
        raise
    log.info("step %s done", name)


def session_gone(ctx: StepContext) -> bool:
    """Is the session itself deleted (not only something it names)? Kubernetes deletes a
    configuration's sessions with it; their steps have no status left to write."""
    try:
        ctx.store.get(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace)
    except NotFound:
        return True
    except Exception:  # cannot tell: record the failure as usual
        return False
    return False


def claim(ctx: StepContext, step: str, token: str) -> object:
    """Run as queueing ``token`` or raise ``Ignore``; the session's phase once claimed."""
    status = ctx.session.status
    for _ in range(CLAIM_ATTEMPTS):
        decision = claim_decision(status, token)
        if decision.action == "stop":
            log.info("step %s: %s; nothing to do (a redelivered or duplicate message); "
                     "chain stopped", step, decision.reason)
            raise Ignore()
        if decision.action == "proceed":
            return status.get("phase")
        claimed = ctx.store.patch_status_where(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace,
                                               decision.expect,
                                               claim_patch(status, token, now_iso()))
        if claimed is not None:
            log.info("step %s: session claimed (queueing %s)", step, token)
            return claimed.get("phase")
        status = ctx.store.get(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace).status
    log.warning("step %s: the session kept changing while being claimed; chain stopped "
                "(the stale-session sweeper will queue it again if nobody runs it)", step)
    raise Ignore()


def retry_later(task: Any, ctx: StepContext, step: str, error: Exception,
                retries: int) -> None:
    """Queue the step again after its backoff (raises ``Retry``); return only if the
    retry could not be queued, so that the caller records the failure instead."""
    settings = ctx.settings
    delay = retry_delay_s(retries, base_s=settings.retry_base_s,
                          max_s=settings.retry_max_delay_s)
    due = time.time() + delay
    reason = failure_reason(step, error)
    log.warning("step %s failed (%s); retry %d of %d in %.0fs", step, reason, retries + 1,
                settings.retry_limit, delay)
    try:  # first: the sweeper must see the wait as a sign of life, not as silence
        set_status(ctx, {"retry": {"step": step, "attempt": retries + 1,
                                   "of": settings.retry_limit, "reason": reason,
                                   "at": iso_utc(due), "timestamp": due}})
    except Exception as e:
        log.warning("retry of %s not recorded in the status: %s", step, e)
    try:
        task.retry(exc=error, countdown=delay, max_retries=settings.retry_limit)
    except Retry:
        raise
    except Exception:
        log.exception("could not queue the retry of %s", step)


def app_store(app: Any) -> ResourceStore:
    store: ResourceStore | None = getattr(app, "stashq_store", None)
    if store is None:
        store = app.stashq_store = open_store(app.stashq_settings)
    return store


def failure_reason(step: str, error: BaseException, retries: int = 0) -> str:
    if isinstance(error, StashQError):
        reason = error.reason
    else:
        reason = (f"unexpected {type(error).__name__} in step {step}; "
                  "the worker log has the details")
    return f"{reason} (gave up after {retries} retries)" if retries else reason


def record_failure(ctx: StepContext, step: str, error: BaseException, *,
                   retries: int = 0) -> None:
    reason = failure_reason(step, error, retries)
    if isinstance(error, StashQError):
        log.error("step %s failed: %s", step, reason)
    else:
        log.exception("step %s failed unexpectedly", step)
    try:
        status = ctx.store.patch_status(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace,
                                        failed(reason, now=time.time(), step=step))
        record_last_backup(ctx, status)
        prune_history(ctx)
        push_session_metrics(ctx, status)
    except Exception:  # the original error matters more; say we could not record it
        log.exception("could not record the failure of %s", ctx.ref)


def record_late_failure(ctx: StepContext, step: str, error: BaseException, *,
                        retries: int = 0) -> None:
    """A step after the final phase failed (metrics not pushed): say so beside the
    phase, never instead of it; the backup itself is what the phase is about."""
    reason = failure_reason(step, error, retries)
    log.error("step %s failed after the session ended: %s", step, reason)
    try:
        set_status(ctx, {"lateFailure": {"step": step, "reason": reason, "at": now_iso()}})
    except Exception:
        log.exception("could not record the failure of %s", ctx.ref)


def send_post_hooks(app: Any, ctx: StepContext) -> None:
    """Queue the post hooks of a session that just failed: its chain stops here, so the
    hooks that the chain holds after the status step would never run. Best effort: the
    failure is recorded whatever happens to them (and logged if they cannot be sent)."""
    try:
        phase = POST_OF["backup" if ctx.is_backup else "restore"]
        if not ctx.hooks.of(phase):
            return
        app.signature(POST_HOOK_STEP, args=(str(ctx.ref), {"phase": phase}),
                      immutable=True).apply_async()
        log.info("%s hooks of the failed session queued", phase)
    except Exception:
        log.exception("could not queue the post hooks of %s", ctx.ref)


def set_status(ctx: StepContext, patch: dict[str, Any]) -> dict[str, Any]:
    return ctx.store.patch_status(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace, patch)
