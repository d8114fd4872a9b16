"""The pure parts of `make bench`: targets computed from the table, interleaving, and the
check that a restore loaded the source (no servers)."""

from __future__ import annotations

import pytest

from benchmarks.bench_backup import (
    MAX_PEAK_RSS_MIB,
    SizeResult,
    disk_needed_mib,
    targets,
)
from benchmarks.common import Run, restore_mismatch, rotations

BACKUPS = {"raw": 10.0, "gzip": 50.0, "zstd": 12.0, "restic": 30.0, "mydumper": 9.0}
SESSIONS = {"stashq": 12.0, "stashq-p2": 9.0}
RESTORES = {"mariadb": 100.0, "restic-dump": 120.0, "myloader": 80.0,
            "restore-stashq": 105.0, "restore-stashq-p2": 80.0}


#: StashQ's wall time (CLI start to exit) is this much above its session time.
CLI_S = 1.0


def size(mib: int, peak: float = 90.0, **walls: float) -> SizeResult:
    def run(pipeline: str, wall: float) -> Run:
        return Run(pipeline, wall, 1.0, 1.0, 1.0, extra={"session": wall - CLI_S})
    backups = [run(p, walls.get(p, w)) for p, w in {**BACKUPS, **SESSIONS}.items()]
    restores = [run(p, walls.get(p, w)) for p, w in RESTORES.items()]
    peaks = dict.fromkeys(["stashq", "stashq-p2", "restore-stashq", "restore-stashq-p2"], peak)
    return SizeResult(mib, 1, mib * 2**20, 1.0, backups, restores,
                      dict.fromkeys(peaks, 50.0), peaks)


def met(checks: list[tuple[str, float, float, bool]]) -> dict[str, bool]:
    return {what: ok for what, _, _, ok in checks}


def test_every_target_is_judged_per_size_on_stashq_session_time() -> None:
    checks = targets([size(256)])
    assert len(checks) == 6 + 4  # six ratios, four peaks
    assert all(met(checks).values()), checks
    values = {what: value for what, value, _, _ in checks}
    # StashQ's session time (its wall minus CLI_S) against the baselines' wall time.
    assert values["256 MiB: StashQ 1-stream session / raw dump (≤)"] == pytest.approx(1.1)
    assert values["256 MiB: restic pipeline / StashQ 1-stream session (≥)"] == \
        pytest.approx(30 / 11)
    assert values["256 MiB: StashQ parallel 2 session / mydumper -t 2 (≤)"] == \
        pytest.approx(8 / 9)
    assert values["256 MiB: StashQ 1-stream restore session / mariadb < dump.sql (≤)"] == \
        pytest.approx(1.04)
    assert values["256 MiB: StashQ restore session of parallel 2 / myloader -t 2 (≤)"] == \
        pytest.approx(79 / 80)


def test_a_slow_stashq_misses_the_targets_it_is_set_against() -> None:
    checks = met(targets([size(256, stashq=17.0, **{"restore-stashq-p2": 82.0})]))
    assert not checks["256 MiB: StashQ 1-stream session / raw dump (≤)"]
    assert not checks["256 MiB: restic pipeline / StashQ 1-stream session (≥)"]
    assert not checks["256 MiB: StashQ restore session of parallel 2 / myloader -t 2 (≤)"]
    assert checks["256 MiB: StashQ parallel 2 session / mydumper -t 2 (≤)"]


def test_peak_rss_is_capped_and_flat_within_ten_percent_over_the_sizes() -> None:
    flat = met(targets([size(256, peak=80.0), size(1024, peak=88.0)]))
    assert flat["peak RSS largest / smallest size, stashq backup (1 stream) (≤)"]
    grows = met(targets([size(256, peak=80.0), size(1024, peak=89.0)]))
    assert not grows["peak RSS largest / smallest size, stashq backup (1 stream) (≤)"]
    over = met(targets([size(256, peak=MAX_PEAK_RSS_MIB + 1)]))
    assert not over["256 MiB: worker peak RSS MiB, stashq restore (1 stream) (≤)"]


def test_each_run_rotates_the_order_by_one() -> None:
    assert rotations(["a", "b", "c"], 3) == [
        (0, "a"), (0, "b"), (0, "c"), (1, "b"), (1, "c"), (1, "a"),
        (2, "c"), (2, "a"), (2, "b")]


def test_a_restore_that_loaded_nothing_or_other_rows_is_a_mismatch() -> None:
    source = {"t0": (1000, 42), "t1": (1000, 43)}
    assert restore_mismatch(source, dict(source)) is None
    assert "['t0', 't1']" in (restore_mismatch(source, {}) or "")
    assert "['t1']" in (restore_mismatch(source, {"t0": (1000, 42), "t1": (999, 7)}) or "")
    assert restore_mismatch({"t0": (0, 0)}, {"t0": (0, 0)}) is not None  # proves nothing


def test_the_optional_4_gib_size_fits_this_kind_of_machine() -> None:
    assert disk_needed_mib([256, 1024, 4096], 3) < 60 * 1024
