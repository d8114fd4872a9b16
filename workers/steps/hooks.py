"""The hook steps: a phase's hooks, in order, recorded in ``status.hooks.<phase>``.

Pre hooks (``stashq.pre_hooks``) run before the data step: the first that fails stops
them and fails the session, naming it, before anything is dumped or restored. Post
hooks (``stashq.post_hooks``) run after the final phase is written, those whose
execution policy fits how the session ended; each runs whatever the others did, and
one that fails with ``failurePolicy: Fail`` turns a Succeeded session Failed, naming it
(the snapshot stays). A Failed session gets its post hooks from the frame's failure
path (``send_post_hooks``): its chain stopped at the failing step.

Idempotent per session: a phase whose hooks all ran (``status.hooks.<phase>Done``) is
not run again by a redelivered message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workers.context import StepContext
from workers.hooks.call import HookCall
from workers.hooks.run import HookOutcome, run_hook
from workers.steps.session import now_iso, send_post_hooks, session_step, set_status
from workflows.errors import HookFailed
from workflows.hooks import (
    POST_HOOK_STEP,
    PRE_HOOK_STEP,
    ResolvedHook,
    hook_record,
    post_hook_failure,
    runs_after,
)
from workflows.params import HookParams
from workflows.phases import Phase, failed

log = logging.getLogger(__name__)

__all__ = ["post_hooks", "pre_hooks", "send_post_hooks"]


def _call(ctx: StepContext, phase: str) -> HookCall:
    session_phase = str(ctx.session.status.get("phase") or Phase.RUNNING.value)
    return HookCall(session=ctx.ref.name, namespace=ctx.ref.namespace, kind=ctx.ref.kind,
                    hook_phase=phase, session_phase=session_phase)


def _record(ctx: StepContext, phase: str, records: list[dict[str, object]],
            **extra: Any) -> None:
    set_status(ctx, {"hooks": {phase: records, **extra}})


def _condition(phase: str, ok: bool) -> dict[str, Any]:
    """Stash's condition names: ``PreBackupHookExecutionSucceeded`` and so on."""
    return {"conditions": {f"{phase[0].upper()}{phase[1:]}HookExecutionSucceeded":
                           "True" if ok else "False"}}


def _run(ctx: StepContext, hook: ResolvedHook, call: HookCall,
         records: list[dict[str, object]]) -> HookOutcome:
    outcome = run_hook(ctx, hook, call)
    records.append(hook_record(hook, ok=outcome.ok, attempts=outcome.attempts,
                               seconds=outcome.seconds, output=outcome.output,
                               error=outcome.error))
    _record(ctx, call.hook_phase, records)
    return outcome


def _done(ctx: StepContext, phase: str) -> bool:
    hooks = ctx.session.status.get("hooks") or {}
    if isinstance(hooks, dict) and hooks.get(f"{phase}Done"):
        log.info("%s hooks ran already for this session; not again", phase)
        return True
    return False


@session_step(PRE_HOOK_STEP)
def pre_hooks(ctx: StepContext, params: HookParams) -> None:
    """Run the phase's hooks in order; the first failure fails the session."""
    if _done(ctx, params.phase):
        return
    call, records = _call(ctx, params.phase), list[dict[str, object]]()
    for hook in ctx.resolved_hooks(params.phase):
        outcome = _run(ctx, hook, call, records)
        if not outcome.ok:
            set_status(ctx, _condition(params.phase, False))
            raise HookFailed(f'{params.phase} hook "{hook.label}" failed: {outcome.error}')
    _record(ctx, params.phase, records, **{f"{params.phase}Done": now_iso()})
    set_status(ctx, _condition(params.phase, True))


@session_step(POST_HOOK_STEP, after_final=True)
def post_hooks(ctx: StepContext, params: HookParams) -> None:
    """Run the hooks whose policy fits how the session ended; record each."""
    if _done(ctx, params.phase):
        return
    succeeded = ctx.session.status.get("phase") == Phase.SUCCEEDED
    call, records = _call(ctx, params.phase), list[dict[str, object]]()
    reason = None
    for hook in ctx.resolved_hooks(params.phase):
        if not runs_after(hook.policy, succeeded):
            log.info("%s hook %s skipped: executionPolicy %s, session %s", params.phase,
                     hook.label, hook.policy.value, call.session_phase)
            continue
        outcome = _run(ctx, hook, call, records)
        if not outcome.ok and reason is None:
            reason = post_hook_failure(hook, phase=params.phase, error=str(outcome.error),
                                       session_succeeded=succeeded)
    _record(ctx, params.phase, records, **{f"{params.phase}Done": now_iso()})
    set_status(ctx, _condition(params.phase, all(r["phase"] == "Succeeded" for r in records)))
    if reason is not None:
        log.error("%s; the session is marked Failed (its snapshot stays)", reason)
        set_status(ctx, failed(reason, now=time.time(), step=POST_HOOK_STEP))
