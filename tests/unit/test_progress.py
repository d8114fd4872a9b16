"""The CLI's wait loop: how often it reads a session's status."""

from __future__ import annotations

import pytest

from beat.progress import (
    MAX_POLL_INTERVAL_S,
    MIN_POLL_INTERVAL_S,
    final_line,
    human_bytes,
    poll_interval,
    totals,
)


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


BACKUP_DONE = {"phase": "Succeeded", "sessionDuration": "1.2s",
               "snapshot": {"name": "n-1", "totalSize": 1_655_112, "rawSize": 3_924_959,
                            "uploaded": 1_655_112, "processingTimeSeconds": 0.8}}


@pytest.mark.parametrize(("kind", "status", "expected"), [
    ("BackupSession", BACKUP_DONE, "3.7 MiB dumped, 1.6 MiB stored, 4.7 MiB/s"),
    ("RestoreSession", {"snapshot": {"totalSize": 2048, "rawSize": 4096,
                                     "processingTimeSeconds": 2}},
     "4.0 KiB restored, 2.0 KiB stored, 2.0 KiB/s"),
    # A small dump is still its size: never "0 B" for a snapshot that has bytes.
    ("BackupSession", {"snapshot": {"totalSize": 700, "rawSize": 1500,
                                    "processingTimeSeconds": 0.0}}, "1.5 KiB dumped, 700 B stored"),
    ("BackupSession", {"phase": "Failed", "reason": "x"}, ""),  # nothing taken
    ("RestoreSession", {"snapshot": {"name": "n-1"}}, ""),      # pre-check chose it only
])
def test_totals_of_a_finished_session(kind: str, status: dict[str, object],
                                      expected: str) -> None:
    assert totals(kind, status) == expected


def test_the_final_progress_line_keeps_the_totals() -> None:
    assert final_line("BackupSession", "Succeeded", BACKUP_DONE) == (
        "Succeeded  3.7 MiB dumped, 1.6 MiB stored, 4.7 MiB/s  in 1.2s")
    assert final_line("BackupSession", "Failed", {"phase": "Failed"}) == "Failed"
