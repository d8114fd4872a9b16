"""Hook decisions: where hooks go in a plan, which post hooks run, what a failure does.

Hooks are steps of the chain (one per phase that has hooks): the pre
hooks before the data step, so a failing one fails the session before anything is
written; the post hooks right after the step that writes the final phase, before the
metrics, so the metrics see what a failing post hook made of the session. A session
that fails stops its chain; its post hooks are then sent by the step frame's failure
path (``workers/steps/session.py``), the one place every failure passes. Either way
``runs_after`` says by the final phase and each hook's policy which of them run.

Pure: models and values in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from workflows.errors import NotFound
from workflows.plan import Plan, PlanStep
from workflows.resources.hooks import (
    DEFAULT_HOOK_TIMEOUT_S,
    ExecutionPolicy,
    FailurePolicy,
    Hook,
    HookAction,
    HookPhases,
    HookTemplate,
)

#: The hook steps: pre hooks run like any step of a running session, post hooks also
#: after its final phase (``after_final``), hence two names.
PRE_HOOK_STEP = "stashq.pre_hooks"
POST_HOOK_STEP = "stashq.post_hooks"
#: Steps that move data: pre hooks run before the first of them.
DATA_STEPS = frozenset({"stashq.dump_upload", "stashq.physical_backup",
                        "stashq.restore_stream", "stashq.physical_restore"})
#: The step that writes a session's final phase: post hooks run right after it.
STATUS_STEP = "stashq.update_status"
#: Characters of a hook's output kept in the status (all of it goes to the log).
OUTPUT_STATUS_CHARS = 1024

Phase = Literal["preBackup", "postBackup", "preRestore", "postRestore"]
PRE_OF: dict[str, Phase] = {"backup": "preBackup", "restore": "preRestore"}
POST_OF: dict[str, Phase] = {"backup": "postBackup", "restore": "postRestore"}


#: What a hook or a HookTemplate holds of its action.
ACTION_FIELDS = set(HookAction.model_fields)


@dataclass(frozen=True)
class ResolvedHook:
    """A hook with its template applied: everything the worker needs to run it."""

    label: str                       #: how messages name it: its name, or phase[index]
    action: HookAction
    timeout_s: float
    retries: int
    policy: ExecutionPolicy = ExecutionPolicy.ALWAYS
    on_failure: FailurePolicy = FailurePolicy.FAIL


def is_post(phase: str) -> bool:
    return phase.startswith("post")


def resolve_hook(hook: Hook, *, phase: str, index: int,
                 templates: Mapping[str, HookTemplate]) -> ResolvedHook:
    """``hook`` with its HookTemplate (if it names one) filled in; ``NotFound`` names a
    missing template and the hook that names it."""
    label = hook.name or (hook.hook_template.name if hook.hook_template else f"{phase}[{index}]")
    action: HookAction = hook
    timeout, retries = DEFAULT_HOOK_TIMEOUT_S, 0
    if hook.hook_template is not None:
        template = templates.get(hook.hook_template.name)
        if template is None:
            raise NotFound(f'{phase} hook "{label}": HookTemplate "{hook.hook_template.name}" '
                           "does not exist")
        action, timeout, retries = template.spec, template.spec.timeout, template.spec.max_retry
    return ResolvedHook(
        label=label, action=HookAction.model_validate(action.model_dump(include=ACTION_FIELDS)),
        timeout_s=hook.timeout if hook.timeout is not None else timeout,
        retries=hook.max_retry if hook.max_retry is not None else retries,
        policy=hook.execution_policy or ExecutionPolicy.ALWAYS,
        on_failure=hook.failure_policy or FailurePolicy.FAIL)


def resolve_hooks(hooks: HookPhases, phase: str,
                  templates: Mapping[str, HookTemplate]) -> list[ResolvedHook]:
    return [resolve_hook(h, phase=phase, index=i, templates=templates)
            for i, h in enumerate(hooks.of(phase))]


def runs_after(policy: ExecutionPolicy, succeeded: bool) -> bool:
    """Whether a post hook with ``policy`` runs after a session that ``succeeded`` (or
    failed)."""
    if policy is ExecutionPolicy.ALWAYS:
        return True
    return succeeded is (policy is ExecutionPolicy.ON_SUCCESS)


def with_hooks(plan: Plan, hooks: HookPhases, kind: Literal["backup", "restore"]) -> Plan:
    """``plan`` with a hook step per phase that has hooks: the pre hooks before the
    first data step (or after the first step, if none moves data), the post hooks after
    the status step (or last, if the Task has none)."""
    steps = list(plan.steps)
    pre, post = PRE_OF[kind], POST_OF[kind]
    if hooks.of(post):
        at = next((i + 1 for i, s in enumerate(steps) if s.step == STATUS_STEP), len(steps))
        steps.insert(at, hook_step(post))
    if hooks.of(pre):
        at = next((i for i, s in enumerate(steps) if s.step in DATA_STEPS), min(1, len(steps)))
        steps.insert(at, hook_step(pre))
    return replace(plan, steps=tuple(steps))


def hook_step(phase: Phase) -> PlanStep:
    step = POST_HOOK_STEP if is_post(phase) else PRE_HOOK_STEP
    return PlanStep(function=f"{phase}-hooks", step=step, params={"phase": phase})


def hook_record(hook: ResolvedHook, *, ok: bool, attempts: int, seconds: float, output: str,
                error: str | None = None) -> dict[str, object]:
    """What ``status.hooks.<phase>[]`` says of one hook that ran."""
    record: dict[str, object] = {"name": hook.label, "kind": hook.action.kind,
                                 "phase": "Succeeded" if ok else "Failed",
                                 "attempts": attempts, "durationSeconds": round(seconds, 3),
                                 "output": truncate(output)}
    if error is not None:
        record["error"] = truncate(error)
    return record


#: Shortest secret value masked in a hook's output: a shorter one would mask ordinary text.
MIN_MASKED_CHARS = 4
MASK = "******"


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret value replaced by ``MASK`` (longest
    first, so that a secret containing another is masked whole)."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_MASKED_CHARS}, key=len,
                         reverse=True):
        text = text.replace(secret, MASK)
    return text


def truncate(text: str, limit: int = OUTPUT_STATUS_CHARS) -> str:
    """``text``, or its last ``limit`` characters after a note that it was cut (the end
    of an output is where the error is)."""
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit} characters cut]…{text[-limit:]}"


def post_hook_failure(hook: ResolvedHook, *, phase: str, error: str,
                      session_succeeded: bool) -> str | None:
    """The reason a Succeeded session now fails with, or None if it stays as it is (the
    hook's failurePolicy is Ignore, or the session failed already)."""
    if not session_succeeded or hook.on_failure is FailurePolicy.IGNORE:
        return None
    return f'{phase} hook "{hook.label}" failed: {error}'
