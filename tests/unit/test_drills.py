"""Restore drill decisions as tables of cases (which snapshots, a safe scratch target, an
assertion's verdict, the status), a multi-database dump renamed for its scratch, and
beat sending each slot's drill once whatever the number of replicas (real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from beat.drills import DrillScheduler
from workers.state.redis import RedisStore
from workflows.drills import (
    DrillReport,
    assertion_problem,
    drill_status,
    rename_databases,
    scratch_conflict,
    snapshots_to_check,
)
from workflows.parsing import parse_resource
from workflows.resources import AppBinding, RestoreDrill
from workflows.resources.drill import Assertion, DrillSnapshots
from workflows.snapshots import Snapshot

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def binding(name: str, url: str) -> AppBinding:
    parsed = parse_resource({"apiVersion": "appcatalog.appscode.com/v1alpha1",
                             "kind": "AppBinding", "metadata": {"name": name},
                             "spec": {"type": "kubedb.com/mariadb", "clientConfig": {"url": url},
                                      "secret": {"name": "s"}}})
    assert isinstance(parsed, AppBinding)
    return parsed


PROD = binding("prod", "tcp(10.0.0.1:3306)/")
SAME_SERVER = binding("prod-alias", "tcp(10.0.0.1:3306)/")
SCRATCH = binding("scratch", "tcp(10.0.0.2:3306)/")


@pytest.mark.parametrize(("scratch", "prefix", "databases", "refused"), [
    (SCRATCH, "drill_", (), None),                   # another server: anything goes
    (SCRATCH, "drill_", ("shop",), None),
    (PROD, "drill_", ("shop",), None),               # beside its source, another name
    (PROD, "drill_", (), "whose every database is backed up"),
    (SAME_SERVER, "drill_", (), "whose every database is backed up"),  # by address
    (PROD, "x", ("shop", "xshop"), 'scratch database "xshop" would be its source database'),
])
def test_a_scratch_target_is_never_a_snapshots_source(
        scratch: AppBinding, prefix: str, databases: tuple[str, ...], refused: str | None) -> None:
    reason = scratch_conflict(scratch, prefix, PROD, databases)
    assert (reason is None) if refused is None else (reason is not None and refused in reason)


def snap(session: str, minute: int) -> Snapshot:
    return Snapshot(id=session, session=session, repository="repo", engine="mariadb",
                    server_version="10.11", target="db", databases=("shop",), streams=(),
                    started_at=T0, finished_at=T0 + timedelta(minutes=minute))


SNAPSHOTS = [snap("nightly-3", 3), snap("nightly-1", 1), snap("other-2", 2), snap("nightly-2", 2)]


@pytest.mark.parametrize(("mode", "checked", "chosen"), [
    (DrillSnapshots.LATEST, None, ["nightly-3"]),
    (DrillSnapshots.LATEST, "nightly-1", ["nightly-3"]),
    (DrillSnapshots.EVERY_NEW, None, ["nightly-3"]),          # first drill: the newest
    (DrillSnapshots.EVERY_NEW, "nightly-1", ["nightly-2", "nightly-3"]),
    (DrillSnapshots.EVERY_NEW, "nightly-3", []),              # nothing new
    (DrillSnapshots.EVERY_NEW, "nightly-0", ["nightly-3"]),   # forgotten since: newest
])
def test_which_snapshots_a_drill_restores(mode: DrillSnapshots, checked: str | None,
                                          chosen: list[str]) -> None:
    assert [s.id for s in snapshots_to_check(SNAPSHOTS, "nightly", mode, checked)] == chosen
    assert snapshots_to_check(SNAPSHOTS, "absent", mode, checked) == []


@pytest.mark.parametrize(("assertion", "rows", "problem"), [
    ({"query": "q", "expected": "3"}, [(3,)], None),
    ({"query": "q", "expected": "3"}, [(4,)], 'assertion "q": expected "3", got "4"'),
    ({"name": "n", "query": "q", "expected": "3"}, [], 'assertion "n": expected "3", got "None"'),
    ({"query": "q", "expectedRows": [["a", None], ["b", "2"]]}, [("a", None), (b"b", 2)], None),
    ({"query": "q", "expectedRows": [["a"]]}, [("a",), ("b",)],
     "assertion \"q\": expected rows [('a',)], got [('a',), ('b',)]"),
])
def test_an_assertion_holds_or_says_what_it_got(assertion: dict[str, Any],
                                                rows: list[tuple[Any, ...]],
                                                problem: str | None) -> None:
    assert assertion_problem(Assertion.model_validate(assertion), rows) == problem


def test_the_status_keeps_the_last_pass_of_each_configuration() -> None:
    passed = DrillReport("nightly-1", "nightly", seconds=2.0)
    first = drill_status([passed], {}, now=100.0, now_iso="t1")
    assert first["phase"] == "Passed" and first["reason"] is None
    failed = DrillReport("nightly-2", "nightly", failures=["table shop.t: 3 rows dumped, "
                                                           "2 restored"])
    second = drill_status([failed], first, now=200.0, now_iso="t2")
    entry = second["configurations"]["nightly"]
    assert second["phase"] == "Failed"
    assert second["reason"] == "nightly-2: table shop.t: 3 rows dumped, 2 restored"
    assert entry["last"]["result"] == "Failed" and entry["checkedThrough"] == "nightly-2"
    assert (entry["lastPassed"], entry["lastPassedTimestamp"]) == ("nightly-1", 100.0)


def test_a_multi_database_dump_is_renamed_line_by_line() -> None:
    dump = (b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT*/;\n"
            b"USE `shop`;\nINSERT INTO `t` VALUES (1,'USE `shop`;');\n"
            b"/*!50003 ALTER DATABASE `shop` CHARACTER SET utf8 */ ;\nUSE `blog`;\n")
    renamed = b"".join(rename_databases([dump[:30], dump[30:70], dump[70:]],
                                        {"shop": "d_shop", "blog": "d_blog"}))
    assert renamed == (b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `d_shop` /*!40100 DEFAULT*/;\n"
                       b"USE `d_shop`;\nINSERT INTO `t` VALUES (1,'USE `shop`;');\n"
                       b"/*!50003 ALTER DATABASE `d_shop` CHARACTER SET utf8 */ ;\n"
                       b"USE `d_blog`;\n")


# --- beat: each slot's drill once ------------------------------------------------------

class Clock:
    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def drill(schedule: str = "0 4 * * *", paused: bool = False) -> RestoreDrill:
    parsed = parse_resource({
        "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreDrill",
        "metadata": {"name": "daily", "namespace": "ops"},
        "spec": {"schedule": schedule, "paused": paused, "repository": {"name": "repo"},
                 "configurations": ["nightly"], "scratch": {"ref": {"name": "scratch"}}}})
    assert isinstance(parsed, RestoreDrill)
    return parsed


FOUR_AM = datetime(2026, 3, 2, 4, 0, tzinfo=UTC).timestamp()


def test_two_beats_send_each_slot_once_and_a_late_slot_never(redis_url: str) -> None:
    store, sent = RedisStore.from_url(redis_url), []
    store.apply(drill())
    beats = [DrillScheduler(store, lambda ns, name: sent.append((ns, name)),
                            clock=Clock(FOUR_AM - 3600)) for _ in range(2)]
    assert [b.tick(FOUR_AM - 3600) for b in beats] == [0, 0]  # first sight: from now on
    assert [b.tick(FOUR_AM + 5) for b in beats] == [1, 0]     # one of them sends it
    assert [b.tick(FOUR_AM + 60) for b in beats] == [0, 0]
    assert sent == [("ops", "daily")]
    status = store.get(RestoreDrill, "daily", "ops").status
    assert status["scheduledThrough"] == FOUR_AM and status["lastScheduleTime"].startswith(
        "2026-03-02T04:00")
    next_day = FOUR_AM + 86400 + 3600  # an hour late: past the starting deadline
    assert beats[1].tick(next_day) == 0
    assert store.get(RestoreDrill, "daily", "ops").status["lastMissed"]["count"] == 1
    assert sent == [("ops", "daily")]


def test_a_paused_drill_is_not_sent(redis_url: str) -> None:
    store, sent = RedisStore.from_url(redis_url), []
    store.apply(drill(paused=True))
    beat = DrillScheduler(store, lambda ns, name: sent.append((ns, name)))
    store.patch_status(RestoreDrill, "daily", "ops", {"scheduledThrough": FOUR_AM - 60})
    assert beat.tick(FOUR_AM + 5) == 0 and sent == []
