"""The numbers of a finished session, gathered from its context and pushed to the
Pushgateway: by the ``push_metrics`` step after a session ends, and by whoever ends a
session Failed outside its chain (the step frame, the stale-session sweeper)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workers.context import StepContext
from workflows.errors import InvalidResource
from workflows.resources import BackupConfiguration, Repository
from workflows.schedule import Cron, interval_s

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
    spec = config.spec
    if not spec.schedule:
        return None
    try:
        return _interval_s(spec.schedule, spec.time_zone, int(now // INTERVAL_REUSE_S))
    except InvalidResource:  # beat reports it in the configuration's status
        return None


#: Seconds one computed interval serves a schedule: stepping through 8 days of an
#: every-minute cron costs ~60 ms, once per session otherwise; the longest gap over 8
#: days moves by the hour at most around a DST change.
INTERVAL_REUSE_S = 3600


@functools.lru_cache(maxsize=1024)
def _interval_s(schedule: str, time_zone: str, hour: int) -> float:
    return interval_s(Cron(schedule, time_zone), float(hour * INTERVAL_REUSE_S))


def push_session_metrics(ctx: StepContext, status: Mapping[str, Any]) -> None:
    if not ctx.settings.pushgateway_url:
        log.info("no Pushgateway configured (STASHQ_PUSHGATEWAY_URL): metrics not pushed")
        return
    from workers import metrics

    metrics.push(ctx.settings.pushgateway_url, session_facts(ctx, status))
