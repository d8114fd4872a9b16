"""Beat's clock, a parameter: the system's in production, a test's own in tests.

``ScaledClock`` is for tests that run real ``stashq beat`` processes: given the same
origin, anchor and rate, several processes share one clock that runs minutes of cron
slots in seconds, without sleeping or patching time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time, seconds."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class ScaledClock:
    """A test clock: unix time ``origin`` at real time ``anchor``, ``rate`` times faster.

    Processes given the same three numbers share one clock, so a test runs minutes of
    cron slots in seconds.
    """

    origin: float
    anchor: float
    rate: float = 1.0

    def now(self) -> float:
        return self.origin + (time.time() - self.anchor) * self.rate

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0) / self.rate)
