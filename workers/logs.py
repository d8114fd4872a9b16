"""Logging with the session name on every line, and nothing secret on any line.

A context variable carries the session being worked on; a filter copies it onto each
record, so log lines from boto3, Celery and our steps all say which session they
belong to.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_session: contextvars.ContextVar[str] = contextvars.ContextVar("stashq_session", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(session)s] %(name)s: %(message)s"


class SessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session = _session.get()
        return True


@contextlib.contextmanager
def session_context(name: str) -> Iterator[None]:
    token = _session.set(name)
    try:
        yield
    finally:
        _session.reset(token)


def install(level: int = logging.INFO) -> None:
    """Attach the session filter and format to the root handlers (idempotent)."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level)
    for handler in root.handlers:
        if not any(isinstance(f, SessionFilter) for f in handler.filters):
            handler.addFilter(SessionFilter())
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
