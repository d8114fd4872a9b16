"""Plan → Celery chain: one immutable signature per step, all carrying the session ref."""

from __future__ import annotations

from celery import Celery, chain
from celery.canvas import Signature

from workflows.errors import NotFound
from workflows.plan import Plan


def build_chain(app: Celery, plan: Plan, ref: str) -> Signature:
    """A chain of the plan's steps; each gets ``(ref, params)`` and nothing else."""
    unknown = [s.step for s in plan.steps if s.step not in app.tasks]
    if unknown:
        raise NotFound(f'Task "{plan.task}" uses step(s) no worker implements: '
                       f"{', '.join(unknown)}")
    return chain(*(app.signature(s.step, args=(ref, dict(s.params)), immutable=True)
                   for s in plan.steps))
