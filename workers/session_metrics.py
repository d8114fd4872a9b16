"""The numbers of a finished session, gathered from its context and pushed to the
Pushgateway: by the ``push_metrics`` step after a session ends, and by whoever ends a
session Failed outside its chain (the step frame, the stale-session sweeper)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workers.context import StepContext
from workflows.errors import InvalidResource
from workflows.resources import BackupConfiguration, Repository
from workflows.schedule import cron_of, interval_s

if TYPE_CHECKING:  # prometheus_client loads only in the process that pushes
    from workers import metrics

log = logging.getLogger(__name__)


def session_facts(ctx: StepContext, status: Mapping[str, Any]) -> metrics.SessionFacts:
    from workers import metrics

    config = ctx.config
    invoker_kind, invoker_name = (("BackupConfiguration", config.name) if config is not None
                                  else (ctx.ref.kind, ctx.ref.name))
    repository = ctx.repository
    fresh = ctx.store.get(Repository, repository.name, repository.namespace)
    return metrics.SessionFacts(
        session_kind=ctx.ref.kind, invoker_kind=invoker_kind, invoker_name=invoker_name,
        namespace=ctx.ref.namespace, repository=repository.name, target_kind="AppBinding",
        target_name=ctx.appbinding.name, status=status, repository_status=fresh.status,
        schedule_interval_s=schedule_interval_s(config, time.time()) if config else None)


def schedule_interval_s(config: BackupConfiguration, now: float) -> float | None:
    """The longest gap between the configuration's slots; None if it has no schedule."""
    try:
        cron = cron_of(config)
    except InvalidResource:  # beat reports it in the configuration's status
        return None
    return interval_s(cron, now) if cron is not None else None


def push_session_metrics(ctx: StepContext, status: Mapping[str, Any]) -> None:
    if not ctx.settings.pushgateway_url:
        log.info("no Pushgateway configured (STASHQ_PUSHGATEWAY_URL): metrics not pushed")
        return
    from workers import metrics

    metrics.push(ctx.settings.pushgateway_url, session_facts(ctx, status))
