"""What to keep: snapshots under a retention policy, and sessions under a history limit.

Snapshot retention means what restic's ``forget --keep-*`` means, because Stash users
wrote their policies against it (restic ``internal/restic/snapshot_policy.go``):

- snapshots are walked newest first; a snapshot is kept if *any* rule keeps it;
- ``keepLast: n`` keeps the n newest;
- ``keepHourly/Daily/Weekly/Monthly/Yearly: n`` keeps the newest snapshot of each of the
  n most recent hours / days / ISO weeks / months / years that have one; periods are
  calendar periods in the configuration's time zone;
- a rule whose n is not used up by the walk also keeps the oldest snapshot (restic
  ≥ 0.14: the longest history the counts allow);
- ``keepTags`` keeps every snapshot carrying any of the tags;
- a policy without any rule keeps everything, as restic refuses to forget without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from workflows.resources.backup import RetentionPolicy

Period = Callable[[datetime], tuple[int, ...]]

#: Rule name → the calendar period a snapshot falls in (its local time's fields).
PERIODS: dict[str, Period] = {
    "hourly": lambda d: (d.year, d.month, d.day, d.hour),
    "daily": lambda d: (d.year, d.month, d.day),
    "weekly": lambda d: tuple(d.isocalendar())[:2],
    "monthly": lambda d: (d.year, d.month),
    "yearly": lambda d: (d.year,),
}


@dataclass(frozen=True)
class SnapshotTime:
    """What retention needs of a snapshot: its id, when it was taken, its tags."""

    id: str
    time: datetime  #: time zone aware
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Selection:
    keep: tuple[str, ...]  #: ids, newest first
    forget: tuple[str, ...]  #: ids, newest first
    reasons: dict[str, tuple[str, ...]]  #: kept id → the rules that keep it


def rules_of(policy: RetentionPolicy) -> list[tuple[str, int]]:
    """``[("last", 3), ("daily", 7)]``: the policy's counting rules that are set."""
    counts = {"last": policy.keep_last, "hourly": policy.keep_hourly,
              "daily": policy.keep_daily, "weekly": policy.keep_weekly,
              "monthly": policy.keep_monthly, "yearly": policy.keep_yearly}
    return [(name, n) for name, n in counts.items() if n]


def select_snapshots(policy: RetentionPolicy, snapshots: Iterable[SnapshotTime],
                     zone: tzinfo) -> Selection:
    """Split ``snapshots`` into those the policy keeps and those it forgets."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    rules = rules_of(policy)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    if not rules and not policy.keep_tags:
        return Selection(tuple(reasons), (), {i: ("no policy",) for i in reasons})
    for name, count in rules:
        for snapshot in kept_by_rule(ordered, count, PERIODS.get(name), zone):
            reasons[snapshot].append(name)
    for s in ordered:
        if s.tags & set(policy.keep_tags):
            reasons[s.id].append("tags")
    keep = tuple(i for i, why in reasons.items() if why)
    forget = tuple(i for i, why in reasons.items() if not why)
    return Selection(keep, forget, {i: tuple(reasons[i]) for i in keep})


def kept_by_rule(newest_first: list[SnapshotTime], count: int, period: Period | None,
                 zone: tzinfo) -> list[str]:
    """The ids one counting rule keeps; ``period`` None is ``keepLast``."""
    kept: list[str] = []
    left, last_value = count, None
    for nr, snapshot in enumerate(newest_first):
        value = (nr,) if period is None else period(snapshot.time.astimezone(zone))
        oldest = nr == len(newest_first) - 1
        if left > 0 and (value != last_value or oldest):
            kept.append(snapshot.id)
            left, last_value = left - 1, value
    return kept


def sessions_beyond_limit(finished: Iterable[tuple[str, float]], limit: int) -> list[str]:
    """Names of finished sessions beyond the ``limit`` newest (``backupHistoryLimit``).

    ``finished`` holds ``(name, finished at unix time)``; ties are broken by name.
    """
    newest_first = sorted(finished, key=lambda item: (item[1], item[0]), reverse=True)
    return [name for name, _ in newest_first[max(limit, 0):]]


def finished_time(status: Mapping[str, Any], slot: int | None = None) -> float | None:
    """When a session finished (unix time): its ``completionTimestamp``, else its
    ``completionTime``, else ``slot`` (a scheduled session's slot); None if not finished.
    Every final phase is written with a completion time."""
    if isinstance(stamp := status.get("completionTimestamp"), int | float):
        return float(stamp)
    if isinstance(text := status.get("completionTime"), str):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return float(slot) if slot is not None else None
