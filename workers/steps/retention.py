"""retention: apply the configuration's ``retentionPolicy`` after its snapshot is taken.

Only this configuration's snapshots are considered (those whose session is one of its
scheduled or triggered sessions, ``<config>-<unix time>``); other configurations
sharing the repository keep theirs. ``dryRun`` reports what would go and deletes
nothing. Otherwise each forgotten snapshot's manifest is deleted first, so a snapshot
is never listed half-deleted, and with ``prune`` its data then goes too, with any data
of this configuration that has no manifest (an earlier forget without prune, or a
prune cut short).

The work runs under the repository's exclusive lock, which backups hold shared, so a
prune never deletes what a running backup is writing. If the lock stays busy, the
policy is applied after a later backup: the session is not failed for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

from workers.context import StepContext
from workers.locks import Lease, RepositoryLocked, repository_lock
from workers.repository import Repository as RepositoryObject
from workers.steps.session import session_step, set_status
from workflows.params import RetentionParams
from workflows.recovery import binlogs_to_forget, snapshot_points
from workflows.resources import BackupConfiguration, Repository
from workflows.resources.backup import RetentionPolicy
from workflows.retention import Selection, SnapshotTime, select_snapshots
from workflows.schedule import slot_of_session
from workflows.snapshots import Snapshot

log = logging.getLogger(__name__)

#: Seconds retention waits for running backups of the repository before deferring.
LOCK_WAIT_S = 60.0
#: Snapshot ids listed in a session's status at most; the counts are always complete.
MAX_LISTED_IDS = 50


def snapshots_of(config: BackupConfiguration, snapshots: list[Snapshot]) -> list[Snapshot]:
    return [s for s in snapshots if slot_of_session(config.name, s.session) is not None]


def select(config: BackupConfiguration, policy: RetentionPolicy,
           snapshots: list[Snapshot]) -> Selection:
    values = [SnapshotTime(s.id, s.started_at, frozenset(s.tags)) for s in snapshots]
    return select_snapshots(policy, values, ZoneInfo(config.spec.time_zone))


def apply_policy(ctx: StepContext, config: BackupConfiguration, policy: RetentionPolicy,
                 lease: Lease) -> dict[str, Any]:
    repo = ctx.repo
    snapshots = snapshots_of(config, repo.list_snapshots())
    selection = select(config, policy, snapshots)
    report: dict[str, Any] = {"policy": policy.name, "dryRun": policy.dry_run,
                              "prune": policy.prune, "kept": len(selection.keep),
                              "forgotten": list(selection.forget[:MAX_LISTED_IDS]),
                              "forgottenCount": len(selection.forget)}
    if lease.expired:
        report["expiredLocks"] = list(lease.expired)
    if policy.dry_run:
        log.info("dry run: policy %s keeps %d snapshot(s), would forget %d: %s", policy.name,
                 len(selection.keep), len(selection.forget), ", ".join(selection.forget) or "-")
        return report
    repo.forget(selection.forget, lease.check)
    kept = [s for s in snapshots if s.id in set(selection.keep)]
    if forgotten_binlogs := forget_binlogs(repo, config.name, kept, lease.check):
        report["forgottenBinlogSegments"] = forgotten_binlogs
    if policy.prune:
        report["prunedObjects"] = repo.prune(
            belongs=lambda snapshot_id: slot_of_session(config.name, snapshot_id) is not None,
            forgotten=selection.forget, exclusive=True, check=lease.check)
        if aborted := repo.abort_dead_uploads():
            report["abortedUploads"] = aborted
    log.info("policy %s kept %d snapshot(s), forgot %d%s", policy.name, len(selection.keep),
             len(selection.forget), f", pruned {report['prunedObjects']} object(s)"
             if policy.prune else "")
    return report


def forget_binlogs(repo: RepositoryObject, source: str, kept: list[Snapshot],
                   check: Callable[[], None]) -> int:
    """Delete the archived binlog segments no kept snapshot needs (``binlogs_to_forget``)."""
    segments = repo.binlog_segments(source)
    if not segments:
        return 0
    return repo.forget_binlog_segments(
        binlogs_to_forget(segments, snapshot_points(kept, source)), check)


@contextlib.contextmanager
def locked(ctx: StepContext, wait_s: float) -> Iterator[Lease]:
    """The repository's exclusive lock (waiting for running backups up to ``wait_s``)."""
    with repository_lock(ctx.store, ctx.repository, str(ctx.ref), exclusive=True,
                         purpose="retention", wait_s=wait_s, lease_s=ctx.settings.lock_lease_s,
                         on_wait=lambda why: set_status(ctx, {"waitingFor": why})) as lease:
        set_status(ctx, {"waitingFor": None})
        yield lease


@session_step("stashq.retention")
def retention(ctx: StepContext, params: RetentionParams) -> None:
    """Forget (and prune) this configuration's snapshots its policy does not keep."""
    config = ctx.config
    policy = config.spec.retention_policy if config is not None else None
    if config is None or policy is None:
        log.info("no retention policy: every snapshot is kept")
        return
    wait_s = params.lock_wait_seconds or LOCK_WAIT_S
    repository = ctx.repository
    try:
        with locked(ctx, wait_s) as lease:
            report = apply_policy(ctx, config, policy, lease)
    except RepositoryLocked as e:
        log.warning("retention deferred to a later backup: %s", e)
        set_status(ctx, {"retention": {"policy": policy.name, "deferred": e.reason},
                         "waitingFor": None,
                         "conditions": {"RetentionPolicyApplied": "False"}})
        return
    set_status(ctx, {"retention": report, "conditions": {"RetentionPolicyApplied": "True"}})
    if not policy.dry_run:
        ctx.store.patch_status(Repository, repository.name, repository.namespace,
                               {"snapshotsRemovedOnLastCleanup": report["forgottenCount"]})
