"""Where the scheduler learns which BackupConfigurations changed, at a cost that grows
with the changes, not with the configurations.

Each tick asks its feed for a ``Batch``: the objects that are new or may have changed,
and the ones deleted; ``complete`` when the batch is everything there is (a listing).
Each store hands out the cheapest feed it can (``ResourceStore.feed``):

- ``ChangeLogFeed`` (Redis): the store logs every apply, create and delete in a
  stream; a tick reads the entries since its cursor and fetches those objects (two
  round trips, nothing when nothing changed). As a safety net for writers that bypass
  the store (a restored dump, a hand edit), it also re-reads a slice of the index each
  tick, so that every configuration is read again within ``RELIST_EVERY_S`` — spread
  over the ticks, never one 10,000-object listing in one tick. A log trimmed past the
  cursor, or replaced, lists everything again once.
- ``WatchFeed`` (Kubernetes): kopf's list, then watch from the list's
  ``resourceVersion`` in a thread; a tick takes what the watch brought. ``410 Gone``
  lists again; other failures back off and resume.
- ``ListFeed`` (the benchmark's baseline, and any store without the two above): list
  everything when the store's generation moved, and every ``RELIST_EVERY_S``.

The feeds know their stores only by the small protocols below, so that neither store
module imports the other's feed.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from workers.state.base import (
    Batch,
    RawObject,
    Ref,
    Refs,
    ResourceVersionExpired,
    raw_object,
)
from workflows.resources import BackupConfiguration, Resource

log = logging.getLogger(__name__)

#: Seconds within which every configuration is read again even if no change was
#: logged: a safety net for writers that bypass the store (a restored dump, a hand edit).
RELIST_EVERY_S = 300.0
#: Seconds one watch request lasts before it is renewed (well under the API server's own).
WATCH_TIMEOUT_S = 300
#: Longest pause, seconds, between attempts after the watch failed.
WATCH_BACKOFF_MAX_S = 30.0
#: The kind a feed follows unless told otherwise: the scheduler's.
KIND = BackupConfiguration


class Lister(Protocol):
    def list_raw(self, cls: type[Resource], namespace: str | None = None) -> list[RawObject]:
        """Every object of a kind as bytes."""

    def generation(self, cls: type[Resource]) -> int | None:
        """Changes whenever an object of the kind is applied, created or deleted; None:
        the store cannot tell."""


class ChangeLog(Protocol):
    """A store that logs its changes (``RedisStore``)."""

    def list_raw(self, cls: type[Resource], namespace: str | None = None) -> list[RawObject]:
        """Every object of a kind as bytes."""

    def changes(self, cls: type[Resource], after: str) -> tuple[Refs, str] | None:
        """Refs changed since the cursor ``after``, and the next cursor; None: list again."""

    def get_raw_many(self, cls: type[Resource], refs: list[Ref]) -> list[RawObject | None]:
        """The objects named, None where one is gone."""

    def scan_refs(self, cls: type[Resource], cursor: int, count: int) -> tuple[int, Refs]:
        """One step of a pass over the kind's index; cursor 0 ends the pass."""


class Watchable(Protocol):
    """A store that lists with a version and watches from it (``KubeStore``)."""

    def list_versioned(self, kind: str, namespace: str | None) -> tuple[list[Any], str]:
        """Every object of a kind, and the list's version."""

    def watch(self, kind: str, namespace: str | None, resource_version: str,
              timeout_s: int) -> Iterator[dict[str, Any]]:
        """Events after ``resource_version``; ``ResourceVersionExpired`` on 410."""


class ListFeed:
    """Everything, whenever the store's generation moved (or it has none), and every
    ``RELIST_EVERY_S``."""

    def __init__(self, store: Lister, namespace: str | None,
                 kind: type[Resource] = KIND) -> None:
        self.store, self.namespace, self.kind = store, namespace, kind
        self._generation: int | None = None
        self._next_list = -math.inf

    def read(self, now: float) -> Batch:
        store = self.store
        generation = store.generation(self.kind)
        if generation is not None and generation == self._generation and now < self._next_list:
            return Batch()
        objects = store.list_raw(self.kind, self.namespace)
        self._generation, self._next_list = generation, now + RELIST_EVERY_S
        return Batch(objects, complete=True)

    def stop(self) -> None:
        pass


class ChangeLogFeed:
    """The store's change log, plus a rolling re-read of the index (see the module)."""

    def __init__(self, store: ChangeLog, namespace: str | None,
                 kind: type[Resource] = KIND) -> None:
        self.store, self.namespace, self.kind = store, namespace, kind
        self._cursor: str | None = None  #: None: list everything next
        self._known: set[Ref] = set()  #: every ref this feed reported and not deleted
        self._scan, self._scanned = 0, set[Ref]()  #: the pass under way
        self._last_read = 0.0

    def read(self, now: float) -> Batch:
        answer = self.store.changes(self.kind, self._cursor) if self._cursor is not None else None
        if answer is None:
            return self._list(now)
        changed, self._cursor = answer
        refs = {r for r in changed if self._ours(r)} | self._rescan(now)
        self._last_read = now
        if not refs:
            return Batch()
        ordered = sorted(refs)
        batch = Batch()
        for ref, obj in zip(ordered, self.store.get_raw_many(self.kind, ordered), strict=True):
            if obj is None:
                batch.deleted.add(ref)
            else:
                batch.objects.append(obj)
        self._known.update((o.namespace, o.name) for o in batch.objects)
        self._known -= batch.deleted
        return batch

    def stop(self) -> None:
        pass

    def _list(self, now: float) -> Batch:
        """Everything, with the cursor taken first: what changes meanwhile is read again."""
        answer = self.store.changes(self.kind, "")
        objects = self.store.list_raw(self.kind, self.namespace)
        self._cursor = answer[1] if answer is not None else None
        self._known = {(o.namespace, o.name) for o in objects}
        self._scan, self._scanned, self._last_read = 0, set(), now
        return Batch(objects, complete=True)

    def _rescan(self, now: float) -> set[Ref]:
        """The next slice of the index, sized so that a pass takes ``RELIST_EVERY_S``;
        at the end of a pass, the known refs it did not meet (deleted behind our back)."""
        elapsed = max(0.0, now - self._last_read)
        count = max(1, math.ceil(len(self._known) * elapsed / RELIST_EVERY_S))
        self._scan, refs = self.store.scan_refs(self.kind, self._scan, count)
        slice_ = {r for r in refs if self._ours(r)}
        self._scanned |= slice_
        if self._scan != 0:
            return slice_
        unseen, self._scanned = self._known - self._scanned, set()
        return slice_ | unseen

    def _ours(self, ref: Ref) -> bool:
        return self.namespace is None or ref[0] == self.namespace


class WatchFeed:
    """List once in the caller's thread, then watch in a thread of its own."""

    def __init__(self, store: Watchable, namespace: str | None,
                 kind: type[Resource] = KIND) -> None:
        self.store, self.namespace, self.kind = store, namespace, kind
        self._lock = threading.Lock()
        #: What the watch brought since the last read: objects by ref, deletions, and
        #: whether a listing (everything) started it.
        self._objects: dict[Ref, RawObject] = {}
        self._deleted: set[Ref] = set()
        self._complete = False
        self._version = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self, now: float) -> Batch:
        if self._thread is None:
            batch = Batch(self._list(), complete=True)
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"watch-{self.kind.KIND}")
            self._thread.start()
            return batch
        with self._lock:
            batch = Batch(list(self._objects.values()), self._deleted, self._complete)
            self._objects, self._deleted, self._complete = {}, set(), False
        return batch

    def stop(self) -> None:
        self._stopped.set()

    def _list(self) -> list[RawObject]:
        items, self._version = self.store.list_versioned(self.kind.KIND, self.namespace)
        return [raw_object(item) for item in items]

    def _watch(self, *, _iterations: int | None = None) -> None:
        failures = 0
        while not self._stopped.is_set() and (_iterations is None or _iterations > 0):
            if _iterations is not None:
                _iterations -= 1
            try:
                if not self._version:
                    listed = self._list()
                    with self._lock:  # supersedes whatever was pending
                        self._objects = {(o.namespace, o.name): o for o in listed}
                        self._deleted, self._complete = set(), True
                self._follow()
                failures = 0
            except ResourceVersionExpired:
                log.warning("watch of %ss expired; listing again", self.kind.KIND)
                self._version = ""
            except Exception as e:  # the beat outlives any one failure
                failures += 1
                pause = min(WATCH_BACKOFF_MAX_S, 0.5 * 2 ** (failures - 1))
                log.warning("watch of %ss failed (%s: %s); resuming in %.1fs",
                            self.kind.KIND, type(e).__name__, e, pause)
                self._stopped.wait(pause)

    def _follow(self) -> None:
        """One watch request, from the last version seen."""
        for event in self.store.watch(self.kind.KIND, self.namespace, self._version,
                                      WATCH_TIMEOUT_S):
            raw = event.get("object") or {}
            metadata = raw.get("metadata") or {}
            if version := metadata.get("resourceVersion"):
                self._version = str(version)
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                self._take(str(event["type"]), raw_object(raw))
            if self._stopped.is_set():
                return

    def _take(self, event_type: str, obj: RawObject) -> None:
        ref = (obj.namespace, obj.name)
        with self._lock:
            if event_type == "DELETED":
                self._objects.pop(ref, None)
                self._deleted.add(ref)
            else:
                self._deleted.discard(ref)
                self._objects[ref] = obj
