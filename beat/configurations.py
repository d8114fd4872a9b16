"""The scheduler's view of the BackupConfigurations: raw bytes in, entries out.

A feed (``workers/state/feeds.py``) hands over the configurations that changed, as
bytes: all of them at the first tick, then only those applied, created or deleted since
(a change log, a watch), so a tick over 10,000 unchanged configurations reads and
compares next to nothing. An entry is parsed again only when its bytes change. A new
or changed entry starts where nothing is replayed: an unchanged schedule goes on where
it was, one seen first goes on from where its status says beat got to (so a restart
counts what it missed), a changed one starts now.

A configuration that does not parse, names a time zone this machine lacks or a cron
that never fires becomes an entry with an ``error``: reported once in its status
(``phase: Invalid`` and the reason) and the log, and never scheduled.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from workers.state.base import Batch, Feed, RawObject, ResourceStore
from workflows.errors import InvalidResource, NotFound
from workflows.manifests import load_json
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration
from workflows.schedule import Cron, cron_of

log = logging.getLogger(__name__)

SOURCE = "state store"

ConfigKey = tuple[str, str]  #: (namespace, name)


@dataclass
class Entry:
    """Beat's memory of one configuration."""

    body: bytes
    status: bytes | None
    config: BackupConfiguration | None = None
    cron: Cron | None = None
    error: str | None = None
    after: float = 0.0  #: every slot at or before this time is handled
    next_slot: float = math.inf  #: the first slot after ``after``; inf: none to watch

    def status_dict(self) -> dict[str, Any]:
        try:
            status = load_json(self.status, source=SOURCE) if self.status else {}
        except InvalidResource:
            return {}
        return status if isinstance(status, dict) else {}


class Configurations:
    """Entries by (namespace, name), kept current by ``refresh``."""

    def __init__(self, store: ResourceStore, namespace: str | None = None,
                 feed: Feed | None = None) -> None:
        self.store, self.namespace = store, namespace
        self.feed = feed or store.feed(BackupConfiguration, namespace)
        self.entries: dict[ConfigKey, Entry] = {}
        #: Cron objects shared by configurations with the same schedule and zone.
        self._crons: dict[tuple[str, str], Cron] = {}

    def refresh(self, now: float) -> None:
        """Take in what the feed says changed since the last refresh."""
        batch = self.feed.read(now)
        try:
            for obj in batch.objects:
                key = (obj.namespace, obj.name)
                entry = self.entries.get(key)
                if entry is not None and entry.body == obj.body:
                    entry.status = obj.status
                    continue
                self.entries[key] = entry = self._load(obj, entry, now)
                self.report(key, entry)
        finally:  # the feed has moved on: what it said was deleted must go whatever failed
            self._forget(batch)

    def _forget(self, batch: Batch) -> None:
        """Drop the deleted entries (with a listing: every entry it did not show)."""
        gone = batch.deleted & self.entries.keys()
        if batch.complete and len(batch.objects) != len(self.entries):
            gone |= self.entries.keys() - {(o.namespace, o.name) for o in batch.objects}
        if not gone:
            return
        for key in sorted(gone):
            log.info("BackupConfiguration %s/%s was deleted: no longer scheduled", *key)
            del self.entries[key]
        used = {(c.schedule, c.time_zone) for e in self.entries.values() if (c := e.cron)}
        self._crons = {k: c for k, c in self._crons.items() if k in used}

    def _load(self, obj: RawObject, previous: Entry | None, now: float) -> Entry:
        entry = Entry(obj.body, obj.status)
        try:
            config = parse_config(obj)
            entry.config, entry.cron = config, self._cron(config)
            if entry.cron is not None:
                entry.after = self._start(entry, entry.cron, previous, now)
                entry.next_slot = entry.cron.next_after(entry.after)
        except InvalidResource as e:
            entry.error, entry.next_slot = located(e, obj.name), math.inf
        except Exception as e:  # a bug must not stop the other configurations
            log.exception("BackupConfiguration %s/%s could not be loaded", obj.namespace,
                          obj.name)
            entry.error = f"unexpected {type(e).__name__} while loading it; see the beat log"
            entry.next_slot = math.inf
        return entry

    def _cron(self, config: BackupConfiguration) -> Cron | None:
        spec = config.spec
        if not spec.schedule:
            return None
        key = (spec.schedule, spec.time_zone)
        if key not in self._crons:
            self._crons[key] = cron_of(config)  # type: ignore[assignment]
        return self._crons[key]

    def _start(self, entry: Entry, cron: Cron, previous: Entry | None, now: float) -> float:
        """Where a (re)loaded configuration's slots start: nothing is replayed.

        Unchanged schedule: where it was. First sight: where the status says beat got to
        with this same schedule (so a restart counts what it missed), else now.
        """
        if previous is not None and previous.cron is not None:
            return previous.after if schedule_id(previous.cron) == schedule_id(cron) else now
        if previous is None:
            status = entry.status_dict()
            through, same = status.get("scheduledThrough"), status.get("scheduledCron")
            if isinstance(through, int | float) and same == schedule_id(cron):
                return float(through)
        return now

    def report(self, key: ConfigKey, entry: Entry) -> None:
        """Say in the status (once per change) whether the configuration is scheduled."""
        status = entry.status_dict()
        if entry.error is not None:
            log.error("BackupConfiguration %s/%s is not scheduled: %s", *key, entry.error)
            if status.get("phase") != "Invalid" or status.get("reason") != entry.error:
                self._patch_config(key, {"phase": "Invalid", "reason": entry.error,
                                         "conditions": {"ValidationPassed": "False"}})
        elif status.get("phase") != "Ready":
            self._patch_config(key, {"phase": "Ready", "reason": None,
                                     "conditions": {"ValidationPassed": "True"}})

    def _patch_config(self, key: ConfigKey, patch: dict[str, Any]) -> None:
        """Best effort: a configuration deleted since the feed read it is skipped (the
        feed says so next time), so that the rest of the batch is still taken in."""
        try:
            self.store.patch_status(BackupConfiguration, key[1], key[0], patch)
        except NotFound:
            log.info("BackupConfiguration %s/%s was deleted before its status was written",
                     *key)


def schedule_id(cron: Cron) -> str:
    return f"{cron.schedule} {cron.time_zone}"


def located(error: InvalidResource, name: str) -> str:
    """The error's message, saying where it is if it does not yet."""
    if error.source:
        return str(error)
    return str(InvalidResource(error.detail, source=SOURCE, kind="BackupConfiguration",
                               name=name, path=error.path))


def parse_config(obj: RawObject) -> BackupConfiguration:
    try:
        raw = load_json(obj.body, source=SOURCE)
    except InvalidResource as e:
        raise InvalidResource(e.detail, source=SOURCE, kind="BackupConfiguration",
                              name=obj.name) from None
    config = parse_resource(raw, source=SOURCE)
    if not isinstance(config, BackupConfiguration):
        raise InvalidResource(f'stored as a BackupConfiguration but is a "{config.kind}"',
                              source=SOURCE, name=obj.name)
    return config
