"""Named pause points for fault-injection tests; inert unless ``pause_at`` is set.

The fault tests kill a worker at precise moments of a backup (before the upload, between
the last part and the manifest). Polling for such a moment from outside is racy, so the
step itself sleeps there when ``STASHQ_PAUSE_AT=<point>:<seconds>`` names that point;
the test waits for the log line below, then kills. Production never sets it: with the
setting empty this is one string comparison.
"""

from __future__ import annotations

import logging
import time

from workflows.settings import Settings

log = logging.getLogger(__name__)

#: The points a step may pause at, in the order a backup passes them.
POINTS = ("before_upload", "before_manifest", "before_segment_manifest")


def pause_at(settings: Settings, point: str) -> None:
    """Sleep here if the settings name this point (test only)."""
    if not settings.pause_at:
        return
    name, _, seconds = settings.pause_at.partition(":")
    if name != point:
        return
    log.warning("test pause at %s for %ss (STASHQ_PAUSE_AT)", point, seconds)
    time.sleep(float(seconds or 3600))
