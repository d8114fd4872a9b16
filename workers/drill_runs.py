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
redelivered takes it over, and any run does once it is older than the drill's
``timeoutSeconds`` plus ``CLAIM_GRACE_S``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

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
    Nothing (no report) if another run of the drill holds it (``claim``). Whatever
    happens, ``status.running`` is cleared: a drill that could not run at all ends
    Failed with the reason (a generic one for a bug; the log has the traceback)."""
    drill = store.get(RestoreDrill, name, namespace)
    if not claim(store, drill, task_id):
        return []
    try:
        reports = drill_all(settings, store, drill)
    except StashQError as e:
        log.error("RestoreDrill %s/%s could not run: %s", namespace, name, e.reason)
        record_not_run(store, drill, e.reason)
        raise
    except Exception as e:
        log.exception("RestoreDrill %s/%s failed unexpectedly", namespace, name)
        record_not_run(store, drill, f"unexpected {type(e).__name__}; the worker log has "
                                     "the details")
        raise
    now = time.time()
    patch = drill_status(reports, drill.status, now=now, now_iso=iso_ms(now))
    store.patch_status(RestoreDrill, name, namespace, patch | NOT_RUNNING)
    push_drill_metrics(settings, namespace, name, reports)
    return reports


NOT_RUNNING = {"running": None, "runningTask": None}


def claim(store: ResourceStore, drill: RestoreDrill, task_id: str | None) -> bool:
    """Mark the drill running for this run (``task_id``: its message's, None by hand);
    False, logged, if a live run of it holds it or took it first."""
    status, now = drill.status, time.time()
    held, holder = status.get("running"), status.get("runningTask")
    if held is not None and not (task_id is not None and holder == task_id):
        age = now - _unix(held)
        limit = drill.spec.timeout_seconds + CLAIM_GRACE_S
        if age <= limit:
            log.warning("RestoreDrill %s/%s is running since %s (task %s); this run is "
                        "skipped", drill.namespace, drill.name, held, holder)
            return False
        log.warning("RestoreDrill %s/%s: the run of %s (task %s) is %.0f s old, past its "
                    "timeout: taken as dead, this run takes over", drill.namespace,
                    drill.name, held, holder, age)
    taken = store.patch_status_where(RestoreDrill, drill.name, drill.namespace,
                                     {"running": held, "runningTask": holder},
                                     {"running": iso_ms(now), "runningTask": task_id})
    if taken is None:
        log.warning("RestoreDrill %s/%s: another run started first; this one is skipped",
                    drill.namespace, drill.name)
    return taken is not None


def _unix(text: object) -> float:
    """An ``iso_ms`` time → Unix seconds (0 for anything else: a claim that old is stale)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


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


def record_not_run(store: ResourceStore, drill: RestoreDrill, reason: str) -> None:
    """The status of a drill that could not run: Failed, the reason, not running."""
    store.patch_status(RestoreDrill, drill.name, drill.namespace, {
        "phase": "Failed", "reason": reason, **NOT_RUNNING,
        "lastDrillTime": iso_ms(time.time())})


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
