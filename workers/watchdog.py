"""A time limit for work made of blocking calls: a restore drill's ``timeoutSeconds``.

A drill waits in places no timeout argument reaches: a ``mysql`` client restoring, a
re-dump, an assertion's query on the server. When the time is up the watchdog's timer
thread stops whatever is registered at that moment (kills a client process, ``KILL``s a
query from a second connection); the blocked call then fails in the ordinary way, and
the caller, seeing ``expired``, reports the timeout instead of that failure. Work not
yet started asks ``check()`` first and is not started at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from workflows.errors import StashQError

log = logging.getLogger(__name__)

#: ``with watch(stop):`` runs the block with ``stop`` called at a timeout
#: (``Watchdog.watching``, or ``unwatched`` for work without a time limit).
Watch = Callable[[Callable[[], None]], AbstractContextManager[None]]


@contextmanager
def unwatched(stop: Callable[[], None]) -> Iterator[None]:
    """No time limit: ``stop`` is never called."""
    yield


class TimedOut(StashQError):
    """The watched work passed its time limit and was stopped."""


class Watchdog:
    """``with Watchdog(60, "RestoreDrill weekly") as dog:`` … ``with dog.watching(stop):``."""

    def __init__(self, timeout_s: float | None, what: str) -> None:
        self.timeout_s, self.what = timeout_s, what
        self._fired = threading.Event()
        self._lock = threading.Lock()
        self._stops: dict[int, Callable[[], None]] = {}
        self._timer = (threading.Timer(timeout_s, self._fire) if timeout_s is not None
                       else None)

    def __enter__(self) -> Watchdog:
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    @property
    def expired(self) -> bool:
        return self._fired.is_set()

    def reason(self) -> str:
        return f"{self.what} timed out after {self.timeout_s:g} s and was stopped"

    def check(self) -> None:
        """``TimedOut`` if the time is up (call before starting the next piece of work)."""
        if self.expired:
            raise TimedOut(self.reason())

    @contextmanager
    def watching(self, stop: Callable[[], None]) -> Iterator[None]:
        """Within the block, ``stop`` is called if the time runs out (from another
        thread: it must be safe to call while the block is blocked). A failure the block
        raises after that becomes ``TimedOut``."""
        self.check()
        key = id(stop)
        with self._lock:
            self._stops[key] = stop
        try:
            yield
        except Exception as e:
            if self.expired:
                raise TimedOut(self.reason()) from e
            raise
        finally:
            with self._lock:
                self._stops.pop(key, None)
        self.check()

    def _fire(self) -> None:
        self._fired.set()
        with self._lock:
            stops = list(self._stops.values())
        log.error("%s; stopping %d running part(s)", self.reason(), len(stops))
        for stop in stops:
            try:
                stop()
            except Exception as e:  # it may have ended meanwhile
                log.warning("could not stop part of %s: %s", self.what, e)
