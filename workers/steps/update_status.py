"""update-status: the session's final phase and the repository's statistics; then the
session's history is pruned to its limit (``workers/history.py``).

Runs after the data step succeeded. A session that already failed is never turned
into a success, and a backup is Succeeded only if its snapshot is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from workers.context import StepContext
from workers.history import prune_history, record_last_backup
from workers.steps.session import session_step, set_status
from workflows.errors import StashQError
from workflows.params import NoParams
from workflows.phases import Phase, succeeded
from workflows.resources import Repository


def session_seconds(status: Mapping[str, object], now: float) -> float:
    start = status.get("startTime")
    if not isinstance(start, str):
        return 0.0
    begun = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return round(now - begun.timestamp(), 3)


def stash_targets(ctx: StepContext, status: Mapping[str, object], seconds: float) -> list[object]:
    """Per-target stats in Stash's shape, so existing tooling can read them."""
    snapshot = status.get("snapshot") or {}
    assert isinstance(snapshot, dict)
    processing = f"{snapshot.get('processingTimeSeconds')}s"
    done = Phase.SUCCEEDED.value
    return [{"ref": {"kind": "AppBinding", "name": ctx.appbinding.name}, "phase": done,
             "stats": [{"hostname": "host-0", "phase": done, "duration": f"{seconds}s",
                        "snapshots": [{"name": snapshot.get("name"),
                                       "totalSize": snapshot.get("totalSize"),
                                       "uploaded": snapshot.get("uploaded"),
                                       "processingTime": processing}]}]}]


@session_step("stashq.update_status")
def update_status(ctx: StepContext, params: NoParams) -> None:
    """Mark the session Succeeded with its duration and stats; refresh the Repository."""
    status = ctx.session.status
    if status.get("phase") == Phase.FAILED:
        raise StashQError(f"session already Failed: {status.get('reason', 'no reason')}")
    if ctx.is_backup and not (status.get("snapshot") or {}).get("name"):
        raise StashQError("the data step recorded no snapshot; refusing to report success")
    repo = ctx.repository
    ctx.store.patch_status(Repository, repo.name, repo.namespace,
                           ctx.repo.stats())
    now = time.time()
    seconds = session_seconds(status, now)
    final = set_status(ctx, succeeded(now=now, seconds=seconds,
                                      targets=stash_targets(ctx, status, seconds) if ctx.is_backup
                                      else None))
    record_last_backup(ctx, final)
    prune_history(ctx)
