"""The ResourceStore protocol: read resources, create sessions once, patch status.

Implementations: ``RedisStore`` (local mode; resources applied with ``stashq apply``)
and ``KubeStore`` (the API server, in a cluster). Status is kept apart from spec and
changed only through ``patch_status`` (a JSON merge patch, RFC 7386), as with the
Kubernetes status subresource.

The values both stores hand out (``RawObject``, ``LeaseAnswer``) live here too, so
that neither store imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from workflows.errors import StashQError, Transient
from workflows.resources import Resource

R = TypeVar("R", bound=Resource)

#: Where a session's initial phase travels when its store cannot write status in the
#: create itself (Kubernetes drops ``status`` on create): a Skipped session must never
#: look Pending to the watcher, not even between its create and its status patch.
INITIAL_PHASE_ANNOTATION = "stashq.io/initial-phase"
#: Where an object read back from a store is said to come from in an error.
STORE_SOURCE = "state store"


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


class ResourceStore(Leases, BulkAccess, Protocol):
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

    def delete(self, cls: type[Resource], name: str, namespace: str) -> None:
        """Remove the resource and its status; a missing one is not an error."""


def status_matches(status: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
    """Does ``status`` hold every value of ``expect`` (None: the field is absent)?"""
    return all(status.get(name) == value for name, value in expect.items())
