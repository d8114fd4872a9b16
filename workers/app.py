"""The Celery app, configured for long jobs that must not be lost.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged only
  when its step finished; a worker killed mid-backup leaves it on the queue for another.
- ``worker_prefetch_multiplier = 1``: a worker holds one long job, not a backlog.
- ``visibility_timeout`` above the longest backup, or Redis redelivers a running task.
- task events on, for Flower; separate queues for data-moving and control steps.
- at ``worker_ready``, the stale-session sweeper starts (``workers/sweeper.py``): what a
  killed worker left Running is queued again or failed long before Redis would hand its
  message out again.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from workers import logs
from workers.steps.session import CONTROL_QUEUE, DATA_QUEUE, ROUTES
from workers.sweeper import start_in_worker, stop_in_worker
from workflows.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Celery:
    app = Celery("stashq", broker=settings.broker_url, backend=settings.broker_url,
                 set_as_current=True)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        task_default_queue=CONTROL_QUEUE,
        task_queues=None,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
    )
    app.stashq_settings = settings
    import workers.steps  # noqa: F401 - registers the steps with this app

    app.conf.task_routes = dict(ROUTES)
    worker_ready.connect(start_in_worker, weak=False, dispatch_uid="stashq.sweeper.start")
    worker_shutdown.connect(stop_in_worker, weak=False, dispatch_uid="stashq.sweeper.stop")

    logs.install()
    return app


QUEUES = (DATA_QUEUE, CONTROL_QUEUE)
#: Seconds ``unconsumed_queues`` waits for the workers' replies: an idle or busy worker
#: answers within milliseconds (its main process handles control messages), and the
#: user asking is waiting.
INSPECT_TIMEOUT_S = 1.0


def unconsumed_queues(app: Celery, timeout_s: float = INSPECT_TIMEOUT_S) -> list[str] | None:
    """Those of ``QUEUES`` no running worker consumes (all of them: no worker answered);
    None if the broker could not be asked (best effort: a notice, never a failure)."""
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    except Exception as e:
        log.warning("could not ask the workers which queues they consume: %s", e)
        return None
    consumed = {queue.get("name") for queues in replies.values() for queue in queues or ()}
    return [queue for queue in QUEUES if queue not in consumed]
