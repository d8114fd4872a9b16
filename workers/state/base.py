"""The ResourceStore protocol: read resources, create sessions once, patch status.

Implementations: ``RedisStore`` (local mode; resources applied with ``stashq apply``)
and ``KubeStore`` (the API server, in a cluster). Status is kept apart from spec and
changed only through ``patch_status`` (a JSON merge patch, RFC 7386), as with the
Kubernetes status subresource.

The values both stores hand out (``RawObject``, ``LeaseAnswer``, ``Batch``) live here
too, so that neither store imports the other.

Capabilities that only one store has natively are still methods of the protocol, each
with an answer from every store (a documented ``None`` or a ``StashQError`` saying what
is missing): callers hold a ``ResourceStore`` and never ask which one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from workflows.errors import StashQError, Transient
from workflows.resources import Resource
from workflows.resources.hooks import PodSelector

R = TypeVar("R", bound=Resource)

#: Where a session's initial phase travels when its store cannot write status in the
#: create itself (Kubernetes drops ``status`` on create): a Skipped session must never
#: look Pending to the watcher, not even between its create and its status patch.
INITIAL_PHASE_ANNOTATION = "stashq.io/initial-phase"
#: Where an object read back from a store is said to come from in an error.
STORE_SOURCE = "state store"
#: Metadata the API server changes on its own; left out of a ``RawObject`` so that its
#: bytes change only when the object does.
VOLATILE_METADATA = ("resourceVersion", "managedFields", "generation")

RawDict = dict[str, Any]
Ref = tuple[str, str]  #: (namespace, name)
Refs = list[Ref]


class ResourceVersionExpired(StashQError, Transient):
    """``410 Gone``: a watch asked to resume from a version the server no longer keeps.

    Nothing is lost: list again (the list carries a fresh version) and watch from there.
    """


class RawObject(NamedTuple):
    """A stored object as bytes: parsed by the caller, one at a time."""

    namespace: str
    name: str
    body: bytes  #: JSON of the resource without its status
    status: bytes | None  #: JSON of its status, if any


def raw_object(item: Mapping[str, Any]) -> RawObject:
    """A resource as the Kubernetes API returns it (status inside), as a ``RawObject``."""
    metadata = dict(item.get("metadata") or {})
    status = item.get("status")
    body = {k: v for k, v in item.items() if k != "status"}
    body["metadata"] = {k: v for k, v in metadata.items() if k not in VOLATILE_METADATA}
    return RawObject(str(metadata.get("namespace") or ""), str(metadata.get("name") or ""),
                     json.dumps(body, sort_keys=True).encode(),
                     json.dumps(status, sort_keys=True).encode() if status else None)


@dataclass
class Batch:
    """What a ``Feed`` says changed since its last read."""

    objects: list[RawObject] = field(default_factory=list)  #: new or possibly changed
    deleted: set[Ref] = field(default_factory=set)
    complete: bool = False  #: ``objects`` is every object: any other is gone


class Feed(Protocol):
    """The changes to one kind, as cheaply as the store can tell them
    (``workers/state/feeds.py``)."""

    def read(self, now: float) -> Batch:
        """What changed since the last read (everything, the first time)."""

    def stop(self) -> None:
        """Let go of any thread or connection."""


@dataclass(frozen=True)
class LockHold:
    """A lock as its lease table shows it now (for the metrics)."""

    holders: int  #: live holders
    held_s: float  #: seconds the oldest live holder has held it, by the store's clock; 0 if free


@dataclass(frozen=True)
class LeaseAnswer:
    """The store's answer to an acquire: did it work, who is in the way, who lapsed."""

    acquired: bool
    holders: Sequence[Mapping[str, Any]] = ()  #: live holders that conflict
    expired: Sequence[Mapping[str, Any]] = ()  #: lapsed holders removed by this call


class Leases(Protocol):
    """Locks (``workers/locks.py``): per lock name, a table of holders, each shared or
    exclusive, each until its lease lapses. Redis times leases by its server's clock;
    Kubernetes by the clocks of those who write them (``workers/state/lease_table.py``
    says what that assumes). Each call is atomic; a store that is unreachable raises
    ``TransientStorageError``."""

    def acquire_lease(self, lock: str, token: str, holder: Mapping[str, Any], *,
                      exclusive: bool, lease_s: float) -> LeaseAnswer:
        """Add ``token`` (``holder``: owner, purpose, host, pid) for ``lease_s`` seconds
        unless a live holder conflicts (an exclusive one, or any if ``exclusive``); remove
        and return the lapsed holders either way. Never waits: callers poll."""

    def renew_lease(self, lock: str, token: str, lease_s: float) -> bool:
        """Extend ``token``'s lease to ``lease_s`` seconds from now; False if it lapsed
        and was removed meanwhile (someone else may hold the lock now)."""

    def release_lease(self, lock: str, token: str) -> None:
        """Remove ``token``; a missing one is not an error."""

    def lease_holds(self, locks: Sequence[str]) -> list[LockHold] | None:
        """Each lock's live holders (lapsed ones are not counted), in one round trip, for
        the metrics; None where the store cannot tell that cheaply (Kubernetes: a Lease
        read per lock), and then no lock metrics are pushed."""


class BulkAccess(Protocol):
    """What the scheduler and the sweeper read and write by the thousand."""

    def list_raw(self, cls: type[Resource], namespace: str | None = None) -> list[RawObject]:
        """Every object of a kind (every namespace when ``namespace`` is None), unparsed,
        so that one bad object hides no other."""

    def generation(self, cls: type[Resource]) -> int | None:
        """A number that changes whenever an object of the kind is applied, created or
        deleted (status patches leave it): when it has not moved, a listing is as before.
        None when the store cannot tell (Kubernetes): list every time."""

    def create_many(self, resources: Sequence[Resource]) -> Sequence[bool | None]:
        """``create`` of each: True where created, False where the name was taken, None
        where that create failed (logged; the others still count). Raises when the
        store failed as a whole (then some may have been created: a retry finds them)."""

    def feed(self, cls: type[Resource], namespace: str | None) -> Feed:
        """The cheapest way this store can tell what changed in a kind: its change log
        (Redis), a watch (Kubernetes)."""


class PodExec(Protocol):
    def exec_in_pod(self, namespace: str, pod: PodSelector, container: str | None,
                    command: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Run ``command`` in the pod (by name, or the first running one matching the
        labels); its exit code and output. ``HookFailed`` if no pod matches, the API
        refuses, or the store has no pods to run in (Redis); the command is stopped at
        ``timeout_s`` seconds (``HookFailed``)."""


class ResourceStore(Leases, BulkAccess, PodExec, Protocol):
    """Every store implements all of it: callers never ask what a store can do."""

    def get(self, cls: type[R], name: str, namespace: str) -> R:
        """The resource with its current status; ``NotFound`` names kind and name."""

    def list(self, cls: type[R], namespace: str | None = None) -> list[R]:
        """All resources of a kind (every namespace when ``namespace`` is None)."""

    def apply(self, resource: Resource) -> None:
        """Create or replace spec and metadata; an existing status is kept."""

    def create(self, resource: Resource) -> bool:
        """Create only if absent; False if the name is taken (the exactly-once arbiter)."""

    def patch_status(self, cls: type[Resource], name: str, namespace: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the status atomically; return the new status."""

    def patch_status_where(self, cls: type[Resource], name: str, namespace: str,
                           expect: Mapping[str, Any],
                           patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``patch`` only if each ``expect`` field of the status still has that
        value (None: absent), atomically; the new status, or None if one differed."""

    def delete(self, cls: type[Resource], name: str, namespace: str, *,
               orphan: bool = False) -> None:
        """Remove the resource and its status, and the objects it owns (a
        BackupConfiguration's BackupSessions) unless ``orphan``: those then stay, owned
        by nothing. A missing one is not an error."""

    def session_watch(self) -> WatchStore | None:
        """This store as ``stashq watch`` follows it; None where no watcher is needed
        because whoever creates a session queues it (Redis: the CLI and beat)."""


class WatchStore(ResourceStore, Protocol):
    """A store that can also list with a version, watch, and write conditionally
    (``beat/watcher.py``)."""

    def get_raw(self, kind: str, name: str, namespace: str) -> RawDict:
        """The object as the API returns it; ``NotFound`` if it is gone."""

    def list_versioned(self, kind: str, namespace: str | None) -> tuple[list[RawDict], str]:
        """Every object of a kind (``namespace`` None: all) and the list's version."""

    def watch(self, kind: str, namespace: str | None, resource_version: str,
              timeout_s: int) -> Iterator[RawDict]:
        """Events after ``resource_version`` until the server ends the watch;
        ``ResourceVersionExpired`` (410) or ``TransientStorageError`` (dropped)."""

    def patch_status_if(self, kind: str, name: str, namespace: str, resource_version: str,
                        patch: dict[str, Any]) -> bool:
        """Merge ``patch`` into the status if the object is still at that version."""


def status_matches(status: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
    """Does ``status`` hold every value of ``expect`` (None: the field is absent)?"""
    return all(status.get(name) == value for name, value in expect.items())
