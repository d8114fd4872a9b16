"""A RestoreDrill end to end, as it runs in production: two real ``stashq beat``
processes see its slot come, one of them sends it (once), the real worker drills the
snapshot and records result and duration in its status, and its metrics reach the
real Pushgateway with the same verdict and duration."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import STASHQ, Stack
from tests.integration.test_beat import BeatProcess
from tests.integration.test_drills import (
    apply_drill,
    backed_up,
    drill_yaml,
    scratch_databases,
)
from workers.state.redis import RedisStore
from workflows.resources import RestoreDrill

#: Real seconds from the beats' start to the drill's hourly slot: more than a beat takes
#: to start on a busy machine, so that each beat sees the drill before its slot comes.
SLOT_AFTER_S = 20
#: Seconds the test waits for the verdict (the beats look at drills every 15 s).
VERDICT_WAIT_S = 120
SENT = re.compile(r"RestoreDrill (\S+)/weekly: slot (\S+), drill sent")


@contextmanager
def hourly_beats(stack: Stack, namespace: str, tmp_path: Path) -> Iterator[list[BeatProcess]]:
    """Two beats on the test's namespace whose shared clock (real speed) reaches an
    hour's start ``SLOT_AFTER_S`` seconds from now."""
    anchor = time.time()
    origin = (anchor // 3600 + 1) * 3600 - SLOT_AFTER_S
    started = []
    for i in range(2):
        log_path = tmp_path / f"beat-{i}.log"
        proc = subprocess.Popen(
            [STASHQ, "beat", "-n", namespace, f"--clock-origin={origin}",
             f"--clock-anchor={anchor}", "--clock-rate=1"],
            env=stack.env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        started.append(BeatProcess(proc, log_path))
    try:
        yield started
    finally:
        for b in started:
            b.stop()


def pushed(stack: Stack, namespace: str) -> dict[str, float]:
    """The drill metrics of "weekly" in the test's namespace, by name, as scraped."""
    values = {}
    for line in stack.pushgateway.metrics_text().splitlines():
        if (line.startswith("stashq_restoredrill_") and f'namespace="{namespace}"' in line
                and 'drill="weekly"' in line and 'configuration="nightly"' in line):
            values[line.partition("{")[0]] = float(line.rsplit(" ", 1)[1])
    return values


def test_a_drill_is_scheduled_by_beat_run_by_the_worker_and_its_metrics_pushed(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = backed_up(stack, namespace, database, bucket, tmp_path, customers=40)
    apply_drill(stack, namespace, tmp_path,
                drill_yaml(database, expected="40", schedule="0 * * * *"))
    store = RedisStore.from_url(stack.redis_url)
    started = time.time()
    with hourly_beats(stack, namespace, tmp_path) as beats:
        deadline = time.monotonic() + VERDICT_WAIT_S
        while True:
            status = store.get(RestoreDrill, "weekly", namespace).status
            if status.get("lastDrillTime") and not status.get("running"):
                break
            assert all(b.proc.poll() is None for b in beats), "a beat died"
            assert time.monotonic() < deadline, (beats[0].log()[-2000:], status,
                                                 stack.worker.log()[-3000:])
            time.sleep(0.5)
        time.sleep(3)  # a second send, if there were one, would be in a log by now
    finished = time.time()

    sent = [m.groups() for b in beats for m in SENT.finditer(b.log())]
    assert len(sent) == 1, sent  # one beat sent the slot, the other saw it taken
    assert sent[0][0] == namespace and sent[0][1].endswith(":00:00Z")
    assert status["phase"] == "Passed", status
    assert status["lastScheduleTime"] == sent[0][1]
    last = status["configurations"]["nightly"]["last"]
    assert last["snapshot"] == snapshot and last["result"] == "Passed"
    assert last["tables"] == 3 and 0 < last["durationSeconds"] < finished - started
    assert status["configurations"]["nightly"]["lastPassed"] == snapshot
    assert scratch_databases(stack, f"drill_{database}") == []

    metrics = pushed(stack, namespace)
    assert metrics["stashq_restoredrill_success"] == 1, metrics
    assert abs(metrics["stashq_restoredrill_duration_seconds"] - last["durationSeconds"]) < 0.01
    assert started <= metrics["stashq_restoredrill_last_time_seconds"] <= finished
    assert (metrics["stashq_restoredrill_last_success_time_seconds"]
            == metrics["stashq_restoredrill_last_time_seconds"])

