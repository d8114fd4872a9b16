"""push-metrics: the session's and the repository's numbers to the Pushgateway."""

from __future__ import annotations

from workers.context import StepContext
from workers.session_metrics import push_session_metrics
from workers.steps.session import session_step
from workflows.params import NoParams


@session_step("stashq.push_metrics", after_final=True)
def push_metrics(ctx: StepContext, params: NoParams) -> None:
    """Push metrics, then record that they were pushed."""
    push_session_metrics(ctx, ctx.session.status)
    if ctx.settings.pushgateway_url:
        ctx.store.patch_status(ctx.ref.cls, ctx.ref.name, ctx.ref.namespace,
                               {"conditions": {"RepositoryMetricsPushed": "True"}})
