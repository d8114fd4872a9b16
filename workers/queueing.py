"""Send a session's chain under a fresh queue token: the one way a session is queued,
first by its event source (``beat/dispatch.py``), again by the sweeper.

The token is written to the status *before* the message is sent, so that no step can
run without finding its token there, and no later write can turn a session a worker
already claimed back into Pending. It travels as the chain's Celery ``root_id`` (every
step of the chain carries it, retries included); ``workflows/claims.py`` says what a
step does with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from celery import Celery

from workers.chains import build_chain
from workers.context import SessionRef
from workers.state.base import ResourceStore
from workflows.phases import iso_ms
from workflows.plan import Plan


def queue_chain(app: Celery, store: ResourceStore, ref: SessionRef, plan: Plan, *,
                expect: Mapping[str, Any] | None = None, **status: Any) -> str | None:
    """Record a new token (with ``queuedAt`` and ``status``), send the chain; the token.

    ``expect``: record it only if these status fields still hold (the sweeper's
    condition: nobody claimed or queued the session since it looked); None if not.
    Raises ``NotFound`` (a step no worker implements) before anything is written, and
    whatever the broker raises after the token is recorded (the caller fails the session).
    """
    signature = build_chain(app, plan, str(ref))
    token = uuid.uuid4().hex
    patch = {**status, "queueToken": token, "taskId": token, "queuedAt": iso_ms(time.time())}
    if expect is None:
        store.patch_status(ref.cls, ref.name, ref.namespace, patch)
    elif store.patch_status_where(ref.cls, ref.name, ref.namespace, expect, patch) is None:
        return None
    signature.apply_async(root_id=token)
    return token
