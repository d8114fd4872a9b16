"""How long a step waits before its next try after a transient failure.

Exponential: ``base_s``, twice that, four times..., capped at ``max_s``, so a short
blip costs seconds and a long outage is probed a few times an hour, not hammered.
No jitter: steps of different sessions fail at different moments anyway, and a fixed
schedule is what a user reads in the status (``retry.at``) and what tests can predict.
"""

from __future__ import annotations


def retry_delay_s(retries_done: int, *, base_s: float, max_s: float) -> float:
    """Seconds before retry number ``retries_done + 1`` (``retries_done`` ≥ 0)."""
    if retries_done < 0:
        raise ValueError(f"retries_done must be at least 0, got {retries_done}")
    return float(min(max_s, base_s * 2 ** min(retries_done, 62)))
