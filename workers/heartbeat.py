"""A running step's sign of life: ``status.heartbeatAt``, refreshed from a thread.

Late acks keep a killed worker's message in Redis, but only until the visibility
timeout (hours) hands it to another worker; until then nothing else would notice.
So every step, while it runs, patches ``heartbeatAt`` (with ``heartbeatStep`` and
``heartbeatWorker``) every ``heartbeat_interval_s``, and once more when it ends; the
sweeper (``workers/sweeper.py``) acts on sessions whose heartbeat went quiet.

A failed beat (the state store restarting, say) is logged and retried at the next
interval; it never fails the step: the data path does not depend on the status path.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

Patch = Callable[[dict[str, Any]], object]


def worker_name() -> str:
    return f"{platform.node()} pid {os.getpid()}"


class Heartbeat:
    """Calls ``patch`` with a heartbeat now, then every ``interval_s`` until stopped."""

    def __init__(self, patch: Patch, step: str, interval_s: float,
                 now_iso: Callable[[], str]) -> None:
        self._patch, self._step, self._interval_s = patch, step, interval_s
        self._now_iso = now_iso
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat {step}")
        self._failing = False

    def beat(self) -> None:
        try:
            self._patch({"heartbeatAt": self._now_iso(), "heartbeatStep": self._step,
                         "heartbeatWorker": worker_name()})
        except Exception as e:  # the next beat may work; the step goes on meanwhile
            if not self._failing:
                log.warning("heartbeat of %s not recorded: %s: %s", self._step,
                            type(e).__name__, e)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat of %s recorded again", self._step)
        self._failing = False

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat()

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.beat()  # the time the step ended: the wait for the next step counts from here


@contextmanager
def heartbeat(patch: Patch, step: str, interval_s: float,
              now_iso: Callable[[], str]) -> Iterator[Heartbeat]:
    beating = Heartbeat(patch, step, interval_s, now_iso)
    beating.start()
    try:
        yield beating
    finally:
        beating.stop()
