"""One run of a RestoreDrill: its snapshots chosen, each drilled, the verdict recorded.

Called by the ``stashq.restore_drill`` task (beat sends it at each slot of the drill's
schedule) and, for one snapshot, by ``stashq verify``. Before a snapshot is restored the
scratch target is checked against the snapshot's own source (``scratch_conflict``): a
drill never writes to the database it checks, whatever was applied since ``apply``
checked the same.

Runs of one drill never overlap: a run claims ``status.running`` (its start) and
``status.runningTask`` (its Celery task id) with a compare-and-set, and a run that finds
another one's claim is skipped (the next slot drills). Two runs would drop each other's
scratch databases. A claim outlives its run only if the worker died: the same message
given back by the broker sooner than its visibility timeout takes it over, and any run
does once it is older than the drill's ``timeoutSeconds`` plus ``CLAIM_GRACE_S``. A run
records its verdict and clears the claim only while the claim is still its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from workers.context import connection_of, secret_of
from workers.drills import Scratch, drill_snapshot
from workers.repository import Repository as RepositoryObject
from workers.repository import open_repository
from workers.state.base import ResourceStore
from workers.watchdog import Watchdog
from workflows.drills import DrillReport, drill_status, scratch_conflict, snapshots_to_check
from workflows.errors import NotFound, PrecheckFailed, StashQError
from workflows.phases import iso_ms
from workflows.resources import AppBinding, Repository, RestoreDrill
from workflows.resources.drill import Assertion
from workflows.settings import Settings
from workflows.snapshots import Snapshot
from workflows.staleness import unix_time

log = logging.getLogger(__name__)

#: Seconds past a drill's ``timeoutSeconds`` after which its claim is taken as a dead
#: worker's: the timeout stops the drill's clients and queries, and what follows (the
#: scratch databases dropped, a throw-away server stopped) takes less.
CLAIM_GRACE_S = 600.0


def open_repo(store: ResourceStore, settings: Settings, name: str,
              namespace: str) -> RepositoryObject:
    resource = store.get(Repository, name, namespace)
    secret_name = resource.spec.backend.storage_secret_name
    secret = (secret_of(store, secret_name, resource, "spec.backend.storageSecretName")
              if secret_name else None)
    return open_repository(resource, secret, settings)


def scratch_of(store: ResourceStore, binding_name: str, namespace: str, prefix: str) -> Scratch:
    binding = store.get(AppBinding, binding_name, namespace)
    return Scratch(binding, connection_of(store, binding), prefix)


def refuse_own_source(store: ResourceStore, scratch: Scratch, snapshot: Snapshot,
                      namespace: str) -> None:
    """``PrecheckFailed`` if restoring ``snapshot`` into ``scratch`` would write to its
    source database (or its source AppBinding is gone, so that nobody can tell)."""
    try:
        source = store.get(AppBinding, snapshot.target, namespace)
    except NotFound:
        raise PrecheckFailed(f'snapshot "{snapshot.id}": its source AppBinding '
                             f'"{snapshot.target}" is gone, so the scratch target cannot be '
                             "told apart from it; not restored") from None
    reason = scratch_conflict(scratch.binding, scratch.prefix, source, snapshot.databases)
    if reason is not None:
        raise PrecheckFailed(f'snapshot "{snapshot.id}": not restored: {reason}')


def drill_one(store: ResourceStore, repo: RepositoryObject, snapshot: Snapshot,
              scratch: Scratch, assertions: Sequence[Assertion], configuration: str,
              namespace: str, dog: Watchdog | None = None) -> DrillReport:
    """The report of one snapshot's drill; a refused scratch target is its failure. (A
    physical snapshot is drilled on a throw-away server: the scratch target is not used.)"""
    try:
        if snapshot.kind != "physical":
            refuse_own_source(store, scratch, snapshot, namespace)
    except PrecheckFailed as e:
        return DrillReport(snapshot.id, configuration, failures=[e.reason])
    return drill_snapshot(repo, snapshot, scratch, assertions, configuration, dog)


def run_restore_drill(settings: Settings, store: ResourceStore, namespace: str,
                      name: str, task_id: str | None = None) -> list[DrillReport]:
    """Drill the snapshots the RestoreDrill's spec and status select; record the verdict.
    Nothing (no report) if another run of the drill holds it (``Claim``). Whatever
    happens, this run's claim is given back: a drill that could not run at all ends
    Failed with the reason (a generic one for a bug; the log has the traceback)."""
    drill = store.get(RestoreDrill, name, namespace)
    held = Claim.take(store, drill, task_id, settings.visibility_timeout_s)
    if held is None:
        return []
    try:
        reports = drill_all(settings, store, drill)
    except StashQError as e:
        log.error("RestoreDrill %s/%s could not run: %s", namespace, name, e.reason)
        held.release({"phase": "Failed", "reason": e.reason,
                      "lastDrillTime": iso_ms(time.time())})
        raise
    except Exception as e:
        log.exception("RestoreDrill %s/%s failed unexpectedly", namespace, name)
        held.release({"phase": "Failed", "lastDrillTime": iso_ms(time.time()),
                      "reason": f"unexpected {type(e).__name__}; the worker log has the "
                                "details"})
        raise
    now = time.time()
    held.release(drill_status(reports, drill.status, now=now, now_iso=iso_ms(now)))
    push_drill_metrics(settings, namespace, name, reports)
    return reports


@dataclass(frozen=True)
class Claim:
    """This run's hold on ``status.running`` (its start) and ``status.runningTask``."""

    store: ResourceStore
    drill: RestoreDrill
    running: str
    task_id: str | None

    @classmethod
    def take(cls, store: ResourceStore, drill: RestoreDrill, task_id: str | None,
             redelivery_s: float) -> Claim | None:
        """Claim the drill for this run (``task_id``: its message's, None by hand); None,
        logged, if a live run of it holds it or took it first. The same message again
        within ``redelivery_s`` (the broker's visibility timeout) can only be one the
        broker gave back because its worker died: it takes over at once."""
        status, now = drill.status, time.time()
        held, holder = status.get("running"), status.get("runningTask")
        if held is not None:
            age = now - (unix_time(held) or 0.0)  # unreadable: as old as can be
            redelivered = task_id is not None and holder == task_id and age < redelivery_s
            if not redelivered and age <= drill.spec.timeout_seconds + CLAIM_GRACE_S:
                log.warning("RestoreDrill %s/%s is running since %s (task %s); this run is "
                            "skipped", drill.namespace, drill.name, held, holder)
                return None
            log.warning("RestoreDrill %s/%s: the run of %s (task %s) is taken as dead (%s); "
                        "this run takes over", drill.namespace, drill.name, held, holder,
                        "its message came back" if redelivered else f"{age:.0f} s old")
        mine = iso_ms(now)
        taken = store.patch_status_where(RestoreDrill, drill.name, drill.namespace,
                                         {"running": held, "runningTask": holder},
                                         {"running": mine, "runningTask": task_id})
        if taken is None:
            log.warning("RestoreDrill %s/%s: another run started first; this one is skipped",
                        drill.namespace, drill.name)
            return None
        return cls(store, drill, mine, task_id)

    def release(self, verdict: dict[str, object]) -> None:
        """Record ``verdict`` and give the claim back, unless another run took it over
        (it then records its own; this one's is only logged)."""
        d = self.drill
        done = self.store.patch_status_where(
            RestoreDrill, d.name, d.namespace,
            {"running": self.running, "runningTask": self.task_id},
            {**verdict, "running": None, "runningTask": None})
        if done is None:
            log.warning("RestoreDrill %s/%s: another run took this one's claim over; its "
                        "verdict is not recorded: %s", d.namespace, d.name, verdict.get("phase"))


def drill_all(settings: Settings, store: ResourceStore, drill: RestoreDrill) -> list[DrillReport]:
    """The reports of every snapshot the drill selects, within its ``timeoutSeconds``
    (snapshots not reached in time are failed as timed out)."""
    spec, namespace = drill.spec, drill.namespace
    repo = open_repo(store, settings, spec.repository.name, spec.repository.namespace
                     or namespace)
    scratch = scratch_of(store, spec.scratch.ref.name, spec.scratch.ref.namespace or namespace,
                         spec.scratch.database_prefix)
    previous = drill.status.get("configurations") or {}
    snapshots, reports = repo.list_snapshots(), []
    with Watchdog(spec.timeout_seconds, f'RestoreDrill "{drill.name}"') as dog:
        for configuration in spec.configurations:
            checked = (previous.get(configuration) or {}).get("checkedThrough")
            for snapshot in snapshots_to_check(snapshots, configuration, spec.snapshots,
                                               checked):
                reports.append(drill_one(store, repo, snapshot, scratch, spec.assertions,
                                         configuration, namespace, dog))
    return reports


def push_drill_metrics(settings: Settings, namespace: str, name: str,
                       reports: Sequence[DrillReport]) -> None:
    if not settings.pushgateway_url or not reports:
        return
    from workers import metrics

    try:
        metrics.push_drills(settings.pushgateway_url, namespace, name, reports,
                            now=time.time())
    except Exception as e:  # the verdict is recorded; the metric is a bonus
        log.warning("metrics of RestoreDrill %s/%s not pushed: %s", namespace, name, e)
