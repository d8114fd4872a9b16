"""Retention: restic's ``forget --keep-*`` as a pure function, checked by tables and
against a reference model; the history limit; and the repository lock on real Redis."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.locks import RepositoryLocked, acquire, lock_name, repository_lock
from workers.state.redis import RedisStore
from workflows.parsing import parse_resource
from workflows.resources import Repository
from workflows.resources.backup import RetentionPolicy
from workflows.retention import (
    PERIODS,
    SnapshotTime,
    finished_time,
    rules_of,
    select_snapshots,
    sessions_beyond_limit,
)

BERLIN = ZoneInfo("Europe/Berlin")


def snap(when: str, tags: tuple[str, ...] = ()) -> SnapshotTime:
    """A snapshot whose id is its time as written: tables read as a timeline."""
    moment = datetime.fromisoformat(when)
    return SnapshotTime(when, moment if moment.tzinfo else moment.replace(tzinfo=UTC),
                        frozenset(tags))


def kept(policy: RetentionPolicy, times: list[str], zone: ZoneInfo | None = None,
         tags: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    snapshots = [snap(t, (tags or {}).get(t, ())) for t in times]
    return sorted(select_snapshots(policy, snapshots, zone or ZoneInfo("UTC")).keep)


TWO_A_DAY = ["2025-01-01T06:00", "2025-01-01T18:00", "2025-01-02T06:00", "2025-01-02T18:00",
             "2025-01-03T06:00", "2025-01-03T18:00"]


@pytest.mark.parametrize(("policy", "times", "expected"), [
    # No rule at all keeps everything, as restic refuses to forget without a policy.
    (RetentionPolicy(), TWO_A_DAY, TWO_A_DAY),
    (RetentionPolicy(keep_last=3), TWO_A_DAY, TWO_A_DAY[3:]),
    # The newest snapshot of each of the 2 newest days.
    (RetentionPolicy(keep_daily=2), TWO_A_DAY, ["2025-01-02T18:00", "2025-01-03T18:00"]),
    # 5 days asked, 3 exist: the newest of each, and the oldest to make the history long.
    (RetentionPolicy(keep_daily=5), TWO_A_DAY,
     ["2025-01-01T06:00", "2025-01-01T18:00", "2025-01-02T18:00", "2025-01-03T18:00"]),
    # Union: the newest 1, plus the newest of each of 2 months.
    (RetentionPolicy(keep_last=1, keep_monthly=2),
     ["2024-11-30T00:00", "2024-12-01T00:00", "2024-12-31T00:00", "2025-01-05T00:00"],
     ["2024-12-31T00:00", "2025-01-05T00:00"]),
    # ISO weeks: 2024-12-30 (a Monday) is in week 1 of 2025, with 2025-01-05.
    (RetentionPolicy(keep_weekly=2),
     ["2024-12-28T00:00", "2024-12-29T00:00", "2024-12-30T00:00", "2025-01-05T00:00"],
     ["2024-12-29T00:00", "2025-01-05T00:00"]),
    (RetentionPolicy(keep_yearly=1, keep_hourly=1),
     ["2023-06-01T00:00", "2024-06-01T00:00", "2024-06-01T00:30"], ["2024-06-01T00:30"]),
    # A count larger than what exists keeps everything.
    (RetentionPolicy(keep_last=10), TWO_A_DAY, TWO_A_DAY),
])
def test_policies_in_utc(policy: RetentionPolicy, times: list[str], expected: list[str]) -> None:
    assert kept(policy, times) == sorted(expected)


def test_days_are_the_configuration_s_calendar_days() -> None:
    # 23:30 UTC on Jan 1 is 00:30 on Jan 2 in Berlin: in Berlin the two share a day.
    times = ["2025-01-01T12:00", "2025-01-01T23:30", "2025-01-02T06:00"]
    policy = RetentionPolicy(keep_daily=1)
    assert kept(policy, times) == ["2025-01-02T06:00"]
    assert kept(policy, times, BERLIN) == ["2025-01-02T06:00"]
    policy = RetentionPolicy(keep_daily=2)
    assert kept(policy, times) == ["2025-01-01T23:30", "2025-01-02T06:00"]
    assert kept(policy, times, BERLIN) == ["2025-01-01T12:00", "2025-01-02T06:00"]


def test_the_repeated_fall_back_hour_is_one_hour_of_local_time() -> None:
    # 02:10 CEST, 02:40 CEST and 02:10 CET all read "02" on a Berlin clock (restic buckets
    # by the local clock too), so keepHourly: 2 keeps the newest of them and 01:30.
    times = ["2025-10-26T01:30:00+02:00", "2025-10-26T02:10:00+02:00",
             "2025-10-26T02:40:00+02:00", "2025-10-26T02:10:00+01:00"]
    assert kept(RetentionPolicy(keep_hourly=2), times, BERLIN) == [
        "2025-10-26T01:30:00+02:00", "2025-10-26T02:10:00+01:00"]


def test_tagged_snapshots_are_kept_beside_the_counts() -> None:
    tags = {"2025-01-01T06:00": ("before-upgrade",), "2025-01-02T06:00": ("other",)}
    policy = RetentionPolicy(keep_last=1, keep_tags=("before-upgrade",))
    assert kept(policy, TWO_A_DAY, tags=tags) == ["2025-01-01T06:00", "2025-01-03T18:00"]
    only_tags = RetentionPolicy(keep_tags=("before-upgrade",))
    assert kept(only_tags, TWO_A_DAY, tags=tags) == ["2025-01-01T06:00"]


def test_reasons_name_every_rule_that_keeps_a_snapshot() -> None:
    selection = select_snapshots(RetentionPolicy(keep_last=1, keep_daily=1),
                                 [snap(t) for t in TWO_A_DAY], UTC)
    assert selection.reasons == {"2025-01-03T18:00": ("last", "daily")}
    assert selection.forget == tuple(reversed(TWO_A_DAY[:-1]))  # newest first


# --- against a reference model -----------------------------------------------------


def reference_keep(policy: RetentionPolicy, snapshots: list[SnapshotTime],
                   zone: ZoneInfo) -> set[str]:
    """restic's rules restated over sets: per rule, the newest snapshot of each of the
    first n distinct periods (newest first), plus the oldest if fewer than n exist."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    if not rules_of(policy) and not policy.keep_tags:
        return {s.id for s in ordered}
    keep = {s.id for s in ordered if s.tags & set(policy.keep_tags)}
    for name, count in rules_of(policy):
        newest_of: dict[object, str] = {}
        for nr, s in enumerate(ordered):
            period = nr if name == "last" else PERIODS[name](s.time.astimezone(zone))
            newest_of.setdefault(period, s.id)
        periods = list(newest_of)  # in order of first appearance: newest first
        keep |= {newest_of[p] for p in periods[:count]}
        if ordered and len(periods) < count:
            keep.add(ordered[-1].id)
    return keep


counts = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
policies = st.builds(RetentionPolicy, keep_last=counts, keep_hourly=counts, keep_daily=counts,
                     keep_weekly=counts, keep_monthly=counts, keep_yearly=counts,
                     keep_tags=st.lists(st.sampled_from(["a", "b"]), max_size=1).map(tuple))
moments = st.datetimes(min_value=datetime(2023, 12, 20), max_value=datetime(2025, 1, 10),
                       timezones=st.just(UTC))
# Times cluster so that hours, days and weeks hold several snapshots.
clustered = st.builds(lambda base, minutes: base + timedelta(minutes=minutes), moments,
                      st.integers(min_value=0, max_value=3 * 24 * 60))
snapshot_lists = st.lists(
    st.tuples(st.one_of(moments, clustered), st.frozensets(st.sampled_from(["a", "b", "c"]))),
    max_size=25).map(lambda items: [SnapshotTime(f"s{i:02d}", t, tags)
                                    for i, (t, tags) in enumerate(items)])
zones = st.sampled_from([ZoneInfo("UTC"), BERLIN, ZoneInfo("Pacific/Chatham")])


@settings(max_examples=400, deadline=None)
@given(policies, snapshot_lists, zones)
def test_selection_matches_the_reference_model(policy: RetentionPolicy,
                                               snapshots: list[SnapshotTime],
                                               zone: ZoneInfo) -> None:
    selection = select_snapshots(policy, snapshots, zone)
    assert set(selection.keep) == reference_keep(policy, snapshots, zone)
    assert set(selection.keep) | set(selection.forget) == {s.id for s in snapshots}
    assert not set(selection.keep) & set(selection.forget)


def single_rules(policy: RetentionPolicy) -> list[RetentionPolicy]:
    rules = [RetentionPolicy(**{f"keep_{name}": n}) for name, n in rules_of(policy)]
    return rules + ([RetentionPolicy(keep_tags=policy.keep_tags)] if policy.keep_tags else [])


@settings(max_examples=300, deadline=None)
@given(policies, snapshot_lists, zones)
def test_a_policy_keeps_the_union_of_its_rules(policy: RetentionPolicy,
                                               snapshots: list[SnapshotTime],
                                               zone: ZoneInfo) -> None:
    rules = single_rules(policy)
    if not rules:
        return
    union = set().union(*(select_snapshots(r, snapshots, zone).keep for r in rules))
    assert set(select_snapshots(policy, snapshots, zone).keep) == union


@settings(max_examples=300, deadline=None)
@given(policies, snapshot_lists, zones, st.sampled_from(
    ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]))
def test_asking_for_more_never_forgets_more(policy: RetentionPolicy,
                                           snapshots: list[SnapshotTime], zone: ZoneInfo,
                                           field: str) -> None:
    if not rules_of(policy) and not policy.keep_tags:
        return  # no policy keeps everything: any rule forgets something
    more = policy.model_copy(update={field: (getattr(policy, field) or 0) + 1})
    assert set(select_snapshots(policy, snapshots, zone).keep) <= set(
        select_snapshots(more, snapshots, zone).keep)


@settings(max_examples=300, deadline=None)
@given(policies, snapshot_lists, zones)
def test_forgetting_twice_forgets_nothing_more(policy: RetentionPolicy,
                                               snapshots: list[SnapshotTime],
                                               zone: ZoneInfo) -> None:
    first = select_snapshots(policy, snapshots, zone)
    survivors = [s for s in snapshots if s.id in set(first.keep)]
    assert select_snapshots(policy, survivors, zone).forget == ()
    if rules_of(policy) and snapshots:
        newest = max(snapshots, key=lambda s: (s.time, s.id))
        assert newest.id in first.keep


# --- backupHistoryLimit ----------------------------------------------------------------


@pytest.mark.parametrize(("limit", "expected"), [
    (0, ["c", "b", "a2", "a1"]),
    (1, ["b", "a2", "a1"]),
    (2, ["a2", "a1"]),      # a1 and a2 finished together: the name breaks the tie
    (3, ["a1"]),
    (9, []),
])
def test_sessions_beyond_the_history_limit(limit: int, expected: list[str]) -> None:
    finished = [("a1", 100.0), ("b", 200.0), ("a2", 100.0), ("c", 300.0)]
    assert sessions_beyond_limit(finished, limit) == expected


# --- the repository lock, on real Redis -----------------------------------------------


def local_repository(path: str) -> Repository:
    repo = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
                           "metadata": {"name": "repo"},
                           "spec": {"backend": {"local": {"mountPath": path}}}})
    assert isinstance(repo, Repository)
    return repo


@pytest.fixture
def store(redis_url: str) -> RedisStore:
    return RedisStore.from_url(redis_url)


def test_backups_share_the_lock_and_retention_waits_for_them(store: RedisStore) -> None:
    repo = local_repository("/backups/shared")
    with repository_lock(store, repo, "BackupSession/ns/a-1", exclusive=False,
                         purpose="backup", wait_s=0), \
            repository_lock(store, repo, "BackupSession/ns/b-1", exclusive=False,
                            purpose="backup", wait_s=0):
        with pytest.raises(RepositoryLocked) as caught:
            acquire(store, lock_name(repo), "BackupSession/ns/a-2", exclusive=True,
                    purpose="retention", wait_s=0)
        message = str(caught.value)
        assert "repository:local:/backups/shared is locked by" in message
        assert "BackupSession/ns/a-1 (backup, shared, host" in message
        assert "BackupSession/ns/b-1" in message
    with repository_lock(store, repo, "BackupSession/ns/a-2", exclusive=True,
                         purpose="retention", wait_s=0), \
            pytest.raises(RepositoryLocked, match=r"a-2 \(retention, exclusive"):
        acquire(store, lock_name(repo), "BackupSession/ns/c-1", exclusive=False,
                purpose="backup", wait_s=0)


def test_a_waiting_lock_is_taken_as_soon_as_it_is_free(store: RedisStore) -> None:
    repo = local_repository("/backups/wait")
    lease = acquire(store, lock_name(repo), "first", exclusive=True, purpose="retention",
                    wait_s=0)
    threading.Timer(0.5, store.release_lease, (lease.lock, lease.token)).start()
    started = time.monotonic()
    with repository_lock(store, repo, "second", exclusive=True, purpose="retention", wait_s=10):
        assert 0.4 < time.monotonic() - started < 5


def test_a_lapsed_lease_is_reported_with_its_holder_and_replaced(
        store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    repo = local_repository("/backups/crashed")
    acquire(store, lock_name(repo), "BackupSession/ns/killed-1", exclusive=False,
            purpose="backup", wait_s=0, lease_s=0.2)  # its worker dies: nobody renews
    time.sleep(0.4)
    with caplog.at_level(logging.WARNING, logger="workers.locks"), \
            repository_lock(store, repo, "BackupSession/ns/next-1", exclusive=True,
                            purpose="retention", wait_s=0) as lease:
        assert len(lease.expired) == 1 and "BackupSession/ns/killed-1 (backup" in lease.expired[0]
    assert "lapsed without a release" in caplog.text and "killed-1" in caplog.text


def test_a_held_lease_is_renewed_past_its_length(store: RedisStore) -> None:
    repo = local_repository("/backups/long")
    with repository_lock(store, repo, "long-backup", exclusive=False, purpose="backup",
                         wait_s=0, lease_s=0.6) as lease:
        time.sleep(1.5)  # two and a half leases
        with pytest.raises(RepositoryLocked, match="long-backup"):
            acquire(store, lock_name(repo), "prune", exclusive=True, purpose="retention",
                    wait_s=0)
        lease.check()
    acquire(store, lock_name(repo), "prune", exclusive=True, purpose="retention", wait_s=0)


def test_a_lease_taken_over_is_noticed_by_its_holder(store: RedisStore) -> None:
    repo = local_repository("/backups/lost")
    with repository_lock(store, repo, "slow", exclusive=True, purpose="retention", wait_s=0,
                         lease_s=0.6) as lease:
        store.release_lease(lease.lock, lease.token)  # as if it lapsed and was removed
        time.sleep(0.5)
        with pytest.raises(RepositoryLocked, match="lost the lock"):
            lease.check()


@pytest.mark.parametrize(("status", "slot", "expected"), [
    ({"completionTimestamp": 1700000005.5, "completionTime": "2000-01-01T00:00:00Z"}, None,
     1700000005.5),
    ({"completionTime": "2023-11-14T22:13:25Z"}, None, 1700000005.0),
    ({"completionTime": "not a time"}, 1700000000, 1700000000.0),  # the slot, then
    ({"phase": "Running"}, None, None),                            # not finished
])
def test_finished_time(status: dict[str, object], slot: int | None,
                       expected: float | None) -> None:
    assert finished_time(status, slot) == expected
