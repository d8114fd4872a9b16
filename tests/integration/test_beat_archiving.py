"""Binlog archive events as beat emits them: one per configuration and interval slot,
however many beats run, none for a configuration that does not archive or is paused."""

from __future__ import annotations

from pathlib import Path

from beat.scheduler import Scheduler
from tests.integration.test_beat import BASE, NS, T0, Beat, ManualClock, Worker, config_yaml
from workers.state.redis import RedisStore

ARCHIVING = "  binlogArchive:\n    intervalSeconds: 60\n"


def archiving_beat(store: RedisStore, tmp_path: Path, clock: ManualClock,
                   sent: list[tuple[str, int]]) -> Beat:
    worker = Worker(store, clock)
    scheduler = Scheduler(store, worker, clock=clock, namespace=NS,
                          archive=lambda ref, slot: sent.append((ref, slot)))
    return Beat(store, clock, worker, scheduler, tmp_path)


def test_two_beats_emit_each_archive_slot_exactly_once(redis_url: str, tmp_path: Path) -> None:
    store, clock = RedisStore.from_url(redis_url), ManualClock(T0 + 5)
    sent: list[tuple[str, int]] = []
    one = archiving_beat(store, tmp_path, clock, sent)
    two = archiving_beat(store, tmp_path, clock, sent)
    one.apply(BASE, config_yaml("nightly", "0 3 * * *", extra=ARCHIVING),
              config_yaml("plain", "0 3 * * *"),
              config_yaml("paused", "0 3 * * *", paused=True, extra=ARCHIVING))
    while clock.t < T0 + 10 * 60:
        one.scheduler.tick()
        two.scheduler.tick()
        clock.t += 7
    assert sorted(sent) == [(f"{NS}/nightly", int(T0) + 60 * i) for i in range(10)]
    assert one.status("nightly")["binlogArchiveSlot"] == int(T0) + 540
