"""restore-drill: the Celery task beat sends at each slot of a RestoreDrill's schedule.

Not a session step: a drill's state is its RestoreDrill's status, which the run writes
(``workers/drill_runs.py``). The message carries the drill's namespace and name only.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import shared_task

from workers.drill_runs import run_restore_drill
from workers.logs import session_context
from workers.steps.session import DATA_QUEUE, ROUTES, app_store
from workflows.errors import StashQError

log = logging.getLogger(__name__)

DRILL_TASK = "stashq.restore_drill"
ROUTES[DRILL_TASK] = {"queue": DATA_QUEUE}


@shared_task(name=DRILL_TASK, bind=True, acks_late=True,  # type: ignore[untyped-decorator]
             reject_on_worker_lost=True)
def restore_drill(self: Any, namespace: str, name: str) -> None:
    """Run the drill; a failure to run it at all is in its status (the run wrote it)."""
    settings, store = self.app.stashq_settings, app_store(self.app)
    # A StashQError is logged and recorded by the run; not retried (the next slot is).
    with session_context(f"RestoreDrill/{name}"), contextlib.suppress(StashQError):
        run_restore_drill(settings, store, namespace, name, task_id=self.request.id)
