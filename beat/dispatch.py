"""Queue a session: resolve its Task into a chain and send it. Shared by every source.

A session whose Task cannot be resolved (unknown Task, missing Function, bad params,
dangling reference) is marked Failed with the reason instead of being queued.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

from workers.context import SessionRef, StepContext
from workers.queueing import queue_chain
from workers.state.base import ResourceStore
from workflows.errors import NotFound, StashQError
from workflows.phases import Phase, failed, pending
from workflows.resources import BackupConfiguration, BackupSession, RestoreSession
from workflows.resources.backup import Invoker
from workflows.resources.base import API_VERSION, Metadata
from workflows.schedule import session_name
from workflows.settings import Settings

log = logging.getLogger(__name__)


def dispatch(app: Celery, store: ResourceStore, settings: Settings, ref: SessionRef) -> str:
    """Send the session's chain; return its queue token (the chain's Celery root id)."""
    ctx = StepContext(settings, store, ref)
    try:
        token = queue_chain(app, store, ref, ctx.plan, phase=Phase.PENDING.value)
    except StashQError as e:
        store.patch_status(ref.cls, ref.name, ref.namespace, failed(e.reason, now=time.time()))
        raise
    log.info("queued %s (%s)", ref, ctx.plan.task)
    return str(token)


def backup_session(config: str, namespace: str, slot_unix: int,
                   status: dict[str, Any] | None = None, *,
                   owner: BackupConfiguration | None = None) -> BackupSession:
    """BackupSession ``<config>-<slot>``, Pending unless ``status`` says otherwise (e.g.
    Skipped with a reason), owned by ``owner`` (the configuration, as read from the
    store) where the store keeps owners: deleting the configuration deletes it."""
    owners = owner.owner_references() if owner is not None else []
    metadata = Metadata.model_validate({
        "name": session_name(config, slot_unix), "namespace": namespace,
        **({"ownerReferences": owners} if owners else {})})
    return BackupSession(
        api_version=API_VERSION, kind="BackupSession", metadata=metadata,
        spec={"invoker": Invoker(name=config)},  # type: ignore[arg-type]
        status=status or pending())


def queue_or_fail(queue: Callable[[SessionRef], object], store: ResourceStore,
                  ref: SessionRef) -> bool:
    """Queue ``ref`` for an event source that must keep going: a failure never escapes,
    it ends the session Failed with the reason (dispatch already recorded ours)."""
    try:
        queue(ref)
        return True
    except StashQError as e:
        log.error("%s not queued: %s", ref, e.reason)
    except Exception as e:
        log.exception("%s could not be queued", ref)
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to fail
            store.patch_status(ref.cls, ref.name, ref.namespace, failed(
                f"could not be queued: {type(e).__name__}: {e}", now=time.time()))
    return False


def new_backup_session(store: ResourceStore, config: str, namespace: str, slot_unix: int,
                       status: dict[str, Any] | None = None, *,
                       owner: BackupConfiguration | None = None) -> BackupSession | None:
    """Create ``backup_session(...)``; None if it already exists."""
    session = backup_session(config, namespace, slot_unix, status, owner=owner)
    return session if store.create(session) else None


def create_restore_session(store: ResourceStore, session: RestoreSession) -> bool:
    return store.create(session.model_copy(update={"status": pending()}))
