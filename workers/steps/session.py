"""The frame around every step: context, logging, and a final phase on failure.

A session must always reach a final phase with a reason (Stash issues #1488, #889):
any exception in a step marks the session Failed with a sentence a person can act on
(our own errors carry one; anything else gets a generic reason and a logged
traceback), then re-raises so the chain stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore

from workers.context import SessionRef, StepContext
from workers.logs import session_context
from workers.state import open_store
from workers.state.base import ResourceStore
from workflows.errors import StashQError

log = logging.getLogger(__name__)

FINAL_PHASES = frozenset({"Succeeded", "Failed", "Skipped"})
#: Queue for steps that move data (dump, upload, restore) vs quick control steps.
DATA_QUEUE = "stashq.data"
CONTROL_QUEUE = "stashq.control"

#: Celery task name → queue, filled as steps register; becomes ``task_routes``.
ROUTES: dict[str, dict[str, str]] = {}

StepFunction = Callable[[StepContext, Mapping[str, str]], None]


def now_iso() -> str:
    # Milliseconds: durations are computed from these (whole seconds overstated them).
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_step(name: str, *, queue: str = CONTROL_QUEUE) -> Callable[[StepFunction], Any]:
    """Register ``fn(ctx, params)`` as the Celery task ``name``."""

    ROUTES[name] = {"queue": queue}

    def register(fn: StepFunction) -> Any:
        @shared_task(name=name, bind=True, acks_late=True,  # type: ignore[untyped-decorator]
                     reject_on_worker_lost=True)
        def step(self: Any, ref: str, params: Mapping[str, str]) -> None:
            ctx = StepContext(self.app.stashq_settings, _store(self.app), SessionRef.parse(ref))
            with session_context(ctx.ref.name):
                log.info("step %s started", name)
                try:
                    fn(ctx, params)
                except Ignore:
                    log.info("step %s: nothing left to do, chain stopped", name)
                    raise
                except Exception as e:
                    record_failure(ctx, name, e)
                    raise
                log.info("step %s done", name)

        step.__doc__ = fn.__doc__
        return step

    return register


def _store(app: Any) -> ResourceStore:
    store: ResourceStore | None = getattr(app, "stashq_store", None)
    if store is None:
        store = app.stashq_store = open_store(app.stashq_settings)
    return store


def failure_reason(step: str, error: BaseException) -> str:
    if isinstance(error, StashQError):
        return error.reason
    return (f"unexpected {type(error).__name__} in step {step}; "
            "the worker log has the details")


def record_failure(ctx: StepContext, step: str, error: BaseException) -> None:
    reason = failure_reason(step, error)
    if isinstance(error, StashQError):
        log.error("step %s failed: %s", step, reason)
    else:
        log.exception("step %s failed unexpectedly", step)
    try:
        status = ctx.store.patch_status(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace,
                                        {"phase": "Failed", "reason": reason,
                                         "failedStep": step, "completionTime": now_iso()})
        from workers.steps.push_metrics import push_session_metrics

        push_session_metrics(ctx, status)
    except Exception:  # the original error matters more; say we could not record it
        log.exception("could not record the failure of %s", ctx.ref)


def set_status(ctx: StepContext, patch: dict[str, Any]) -> dict[str, Any]:
    return ctx.store.patch_status(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace, patch)
