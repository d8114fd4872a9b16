"""Running one hook: its action (the only ``if kind ==`` of the family), its timeout and
its retries, and an outcome that says what happened without any credential in it: the
target's password and the hook's header values are masked in its output and error
before either is logged or recorded."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from workers.context import StepContext
from workers.hooks.call import HookCall
from workers.hooks.command import run_command
from workers.hooks.http import run_http
from workers.hooks.sql import run_sql
from workflows.errors import HookFailed, StashQError
from workflows.hooks import ResolvedHook, mask

log = logging.getLogger(__name__)

#: Seconds between two attempts of a failing hook.
HOOK_RETRY_DELAY_S = 2.0


@dataclass(frozen=True)
class HookOutcome:
    ok: bool
    output: str
    attempts: int
    seconds: float
    error: str | None = None


def run_hook(ctx: StepContext, hook: ResolvedHook, call: HookCall,
             retry_delay_s: float = HOOK_RETRY_DELAY_S) -> HookOutcome:
    """Run ``hook`` up to 1 + retries times; the outcome of the last attempt."""
    started = time.monotonic()
    error, output = "", ""
    secrets = secrets_of(ctx, hook)
    for attempt in range(1, hook.retries + 2):
        try:
            output = mask(run_action(ctx, hook, call), secrets)
            log.info("%s hook %s (%s) succeeded (attempt %d)%s", call.hook_phase, hook.label,
                     hook.action.kind, attempt, f": {output}" if output else "")
            return HookOutcome(True, output, attempt, time.monotonic() - started)
        except StashQError as e:
            error = mask(e.reason, secrets)
        except Exception as e:  # a bug or an unexpected library error: said, not raised
            log.exception("%s hook %s failed unexpectedly", call.hook_phase, hook.label)
            error = f"unexpected {type(e).__name__}; the worker log has the details"
        log.warning("%s hook %s failed (attempt %d of %d): %s", call.hook_phase, hook.label,
                    attempt, hook.retries + 1, error)
        if attempt <= hook.retries:
            time.sleep(retry_delay_s)
    return HookOutcome(False, output, hook.retries + 1, time.monotonic() - started, error)


def secrets_of(ctx: StepContext, hook: ResolvedHook) -> list[str]:
    """What a hook's output must not show: the target's password and the hook's header
    values (tokens, often). A command in a pod sees the database's password in its own
    environment and may print it; the status and the log get it masked."""
    action = hook.action
    headers = [h.value for a in (action.http_get, action.http_post) if a is not None
               for h in a.http_headers]
    return [ctx.connection.password, *headers]


def run_action(ctx: StepContext, hook: ResolvedHook, call: HookCall) -> str:
    """The action's output; ``HookFailed`` (or another StashQError) if it failed."""
    action = hook.action
    if action.sql is not None:
        return run_sql(ctx.connection, action.sql, hook.timeout_s,
                       what=f'AppBinding "{ctx.appbinding.name}"')
    if action.http_get is not None:
        return run_http(action.http_get, "GET", call, hook.timeout_s)
    if action.http_post is not None:
        return run_http(action.http_post, "POST", call, hook.timeout_s)
    if action.exec is not None:
        return run_command(ctx.store, action, call, hook.timeout_s)
    raise HookFailed(f'hook "{hook.label}" has no action')
