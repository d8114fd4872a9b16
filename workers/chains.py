"""Plan → Celery chain: one immutable signature per step, all carrying the session ref.

A step with a ``replicas`` param (a physical restore, one per cluster replica) becomes
a group of that many signatures, each with its ``replica`` index; Celery runs them in
parallel and the next step only after all of them succeeded (a chord).
"""

from __future__ import annotations

from celery import Celery, chain, group
from celery.canvas import Signature

from workflows.errors import NotFound
from workflows.plan import REPLICAS_PARAM, Plan, PlanStep


def build_chain(app: Celery, plan: Plan, ref: str) -> Signature:
    """A chain of the plan's steps; each gets ``(ref, params)`` and nothing else."""
    unknown = [s.step for s in plan.steps if s.step not in app.tasks]
    if unknown:
        raise NotFound(f'Task "{plan.task}" uses step(s) no worker implements: '
                       f"{', '.join(unknown)}")
    return chain(*(_signature(app, s, ref) for s in plan.steps))


def _signature(app: Celery, step: PlanStep, ref: str) -> Signature:
    if REPLICAS_PARAM not in step.params:
        return app.signature(step.step, args=(ref, dict(step.params)), immutable=True)
    copies = [app.signature(step.step, args=(ref, params), immutable=True)
              for params in step.replica_params()]
    return copies[0] if len(copies) == 1 else group(copies)
