"""The CLI's wait loop: how often it reads a session's status."""

from __future__ import annotations

import pytest

from beat.progress import MAX_POLL_INTERVAL_S, MIN_POLL_INTERVAL_S, human_bytes, poll_interval


@pytest.mark.parametrize(("elapsed", "interval"), [
    (0.0, MIN_POLL_INTERVAL_S),  # a session that just started is read often
    (1.0, 0.1),  # a tenth of the time waited: seen done within ~10 % of its duration
    (3.0, 0.3),
    (60.0, MAX_POLL_INTERVAL_S),  # a long one: two reads a second, not more
])
def test_poll_interval_is_a_tenth_of_the_wait_within_bounds(elapsed: float,
                                                            interval: float) -> None:
    assert poll_interval(elapsed) == pytest.approx(interval)


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1536, 5 * 2**20)] == ["512 B", "1.5 KiB", "5.0 MiB"]
