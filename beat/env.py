"""What every ``stashq`` command runs against — settings, the state store, the Celery
app, the queue — built once from the environment, and the one handler that turns a
StashQError into ``error: <message>`` and its exit code.

Its own module so that the command modules (``cli.py``, ``cli_kube.py``,
``cli_flower.py``) share it without importing each other. Each command imports what it
uses: ``stashq --help`` loads neither pydantic, Redis nor Celery.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from workflows.errors import StashQError
from workflows.settings import Settings

if TYPE_CHECKING:
    from workers.context import SessionRef

F = TypeVar("F", bound=Callable[..., Any])


class Env:
    """What every command needs, built once from the environment."""

    def __init__(self, namespace: str | None) -> None:
        from workers.state import open_store

        self.settings = Settings.from_env(os.environ)
        self.namespace = namespace or self.settings.namespace
        self.store = open_store(self.settings)

    @property
    def queues_sessions(self) -> bool:
        """Do commands and beat queue the sessions they create? Not where a watcher
        queues every new one (Kubernetes: one path, claimed once)."""
        return self.store.session_watch() is None

    @functools.cached_property
    def app(self) -> Any:
        from workers.app import create_app

        return create_app(self.settings)

    def stalled(self, status: Mapping[str, object]) -> str | None:
        """Why a session still Pending may never start: nothing queued it, or no worker
        consumes the queues (Celery's workers say which they consume); None if neither."""
        if not (status.get("queuedAt") or status.get("taskId")):
            if self.queues_sessions:
                return None
            return ("no watcher has queued it: run `stashq watch` (STASHQ_STORE=kubernetes; "
                    "the chart's watcher Deployment)")
        from workers.app import unconsumed_queues

        idle = unconsumed_queues(self.app)
        if not idle:
            return None
        return (f"no worker consumes queue {', '.join(idle)}. Start one with the same "
                "STASHQ_BROKER_URL: `stashq worker` (still waiting; Ctrl-C stops waiting, "
                "not the session)")

    def queue(self, ref: SessionRef) -> None:
        """Queue a session just created. On Kubernetes the watcher queues every new
        session (one path, claimed once), so commands and beat only create it there."""
        if self.queues_sessions:
            from beat.dispatch import dispatch

            dispatch(self.app, self.store, self.settings, ref)


def reports_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StashQError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


namespace_option = click.option("-n", "--namespace", default=None,
                                help="Namespace (default: STASHQ_NAMESPACE or 'default').")
