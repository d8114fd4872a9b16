"""The installation's numbers, pushed after each stale-session sweep: sessions by phase,
broker queue lengths, and how long each repository's lock has been held.

The sweep already lists every session and (when some are Pending) reads the broker, in
every worker and every beat, every ``stale_sweep_interval_s``; so these numbers come
from a loop that runs anyway, and they are pushed even when no worker is alive (beat
sweeps too), which is what the "queue growing with no worker" alert needs. On
Kubernetes beat has no broker (the watcher queues), so only workers push the queue
lengths there; the alerts read the silence of that group instead. A failed push is
logged and never fails the sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workers.broker import queue_depths
from workers.locks import lock_name
from workers.state.base import ResourceStore
from workers.steps.session import CONTROL_QUEUE, DATA_QUEUE
from workflows.phases import Phase
from workflows.resources import Repository
from workflows.settings import Settings

if TYPE_CHECKING:  # prometheus_client loads only in the process that pushes
    from workers import metrics

log = logging.getLogger(__name__)

PhaseCounts = Mapping[tuple[str, str], int]  #: (session kind, phase) -> sessions


def every_phase(kinds: list[str], counted: PhaseCounts) -> dict[tuple[str, str], int]:
    """Each kind and phase, 0 where none was counted: a phase that empties shows 0,
    not a gap in the graph."""
    return {(kind, phase.value): counted.get((kind, phase.value), 0)
            for kind in kinds for phase in Phase}


def lock_facts(store: ResourceStore, namespace: str | None) -> list[metrics.LockFacts]:
    """Each Repository's lock; none if the store does not report its leases."""
    from workers import metrics

    repositories = store.list(Repository, namespace)
    holds = store.lease_holds([lock_name(r) for r in repositories])
    if holds is None:
        return []
    return [metrics.LockFacts(r.namespace, r.name, hold.holders, hold.held_s)
            for r, hold in zip(repositories, holds, strict=True)]


def push_sweep_metrics(app: Any, store: ResourceStore, settings: Settings,
                       namespace: str | None, phases: dict[tuple[str, str], int]) -> None:
    """Gather and push (the queues only with an ``app`` to read them through); any
    failure is logged (the next sweep pushes again)."""
    if not settings.pushgateway_url:
        return
    from workers import metrics

    try:
        depths = queue_depths(app, (CONTROL_QUEUE, DATA_QUEUE)) if app is not None else None
        facts = metrics.SweepFacts(sessions=phases, queued=depths[0] if depths else None,
                                   unacked=depths[1] if depths else None,
                                   locks=lock_facts(store, namespace))
        metrics.push_sweep(settings.pushgateway_url, facts)
    except Exception as e:
        log.warning("sweep metrics not pushed: %s: %s", type(e).__name__, e)
