"""Repository locks: backups share a repository, retention has it alone.

Stash users found repositories "already locked" for good after a crashed job (#1332,
#838). A lock here is therefore a lease: it lapses unless its holder renews it (a
thread does, every LEASE_S / 3), it says who holds it (session, purpose, host, pid,
since when), and whoever finds a lapsed one reports it in the log, with that holder,
before removing it.

Modes follow restic: any number of ``shared`` holders (backups writing new snapshots)
or one ``exclusive`` holder (retention deleting snapshots and garbage), so a prune
never deletes data that a running backup has not yet made visible with its manifest.
Besides, a backup holds its target's lock exclusively: two backups of one database
(two triggers, or a duplicate of a session's step) run one after the other, never
doubling the load on the database, and the second finds the first one's snapshot when
it is the same session's.

The lease table itself lives in the state store (``Leases``, part of every
``ResourceStore``): in Redis, ``RedisStore.acquire_lease`` and friends, one Lua script
each, timed by the Redis server's clock so that workers' clocks need not agree; on
Kubernetes, one ``coordination.k8s.io/v1`` Lease per lock, written conditionally and
timed by the workers' clocks, which must agree to well within a lease
(``workers/state/lease_table.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.state.base import Leases
from workflows.errors import StashQError, Transient
from workflows.resources import Repository
from workflows.schedule import iso_utc

log = logging.getLogger(__name__)

#: Seconds a holder that stopped renewing (a killed worker) blocks others at most.
LEASE_S = 60.0
#: Seconds between attempts while waiting for a busy lock.
POLL_S = 1.0


class RepositoryLocked(StashQError, Transient):
    """The repository is locked by someone else, or our lease was lost."""

    exit_code = 5


def lock_name(repository: Repository) -> str:
    """Locks are per backend location: two Repository objects on one bucket share one."""
    return f"repository:{repository.spec.backend.description}"


def describe(holder: Mapping[str, Any]) -> str:
    mode = "exclusive" if holder.get("exclusive") else "shared"
    until = iso_utc(float(holder.get("expiresAtMs", 0)) / 1000)
    since = iso_utc(float(holder.get("acquiredAtMs", 0)) / 1000)
    return (f"{holder.get('owner', '?')} ({holder.get('purpose', '?')}, {mode}, host "
            f"{holder.get('host', '?')} pid {holder.get('pid', '?')}, since {since}, "
            f"lease until {until})")


@dataclass
class Lease:
    """A held lock; ``check()`` raises once renewing it failed."""

    leases: Leases
    lock: str
    token: str
    lease_s: float
    expired: tuple[str, ...] = ()  #: lapsed holders this acquire removed, described
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self.lost.is_set():
            raise RepositoryLocked(f"lost the lock on {self.lock}: its lease lapsed "
                                   "(the state store was unreachable for too long)")

    def renew_until_stopped(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                renewed = self.leases.renew_lease(self.lock, self.token, self.lease_s)
            except Exception:  # a blip: the next attempt may work, the lease has slack
                log.warning("could not renew the lock on %s", self.lock, exc_info=True)
                continue
            if not renewed:
                log.error("the lock on %s lapsed and was taken over", self.lock)
                self.lost.set()
                return


def target_lock_name(kind: str, namespace: str, name: str) -> str:
    """The lock of one backup target (a database server's AppBinding)."""
    return f"target:{kind}/{namespace}/{name}"


Waiting = Callable[[str], object]


@contextlib.contextmanager
def repository_lock(leases: Leases, repository: Repository, owner: str, *, exclusive: bool,
                    purpose: str, wait_s: float, lease_s: float = LEASE_S,
                    on_wait: Waiting | None = None) -> Iterator[Lease]:
    """Hold the repository's lock (renewed in a thread) inside the ``with`` block.

    Waits up to ``wait_s`` for conflicting holders, then raises ``RepositoryLocked``
    naming them. Released in any case on the way out.
    """
    with held(leases, lock_name(repository), owner, exclusive=exclusive, purpose=purpose,
              wait_s=wait_s, lease_s=lease_s, on_wait=on_wait) as lease:
        yield lease


@contextlib.contextmanager
def held(leases: Leases, lock: str, owner: str, *, exclusive: bool, purpose: str,
         wait_s: float, lease_s: float = LEASE_S,
         on_wait: Waiting | None = None) -> Iterator[Lease]:
    """Hold ``lock`` (renewed in a thread) inside the ``with`` block; see ``acquire``."""
    lease = acquire(leases, lock, owner, exclusive=exclusive, purpose=purpose,
                    wait_s=wait_s, lease_s=lease_s, on_wait=on_wait)
    renewer = threading.Thread(target=lease.renew_until_stopped, daemon=True,
                               name=f"lease {lease.lock}")
    renewer.start()
    try:
        yield lease
    finally:
        lease._stop.set()
        renewer.join()
        try:
            leases.release_lease(lease.lock, lease.token)
        except Exception:  # it lapses by itself within lease_s
            log.warning("could not release the lock on %s", lease.lock, exc_info=True)


def acquire(leases: Leases, lock: str, owner: str, *, exclusive: bool, purpose: str,
            wait_s: float, lease_s: float = LEASE_S, on_wait: Waiting | None = None) -> Lease:
    """Take ``lock`` or raise ``RepositoryLocked`` after ``wait_s``; ``on_wait`` is told
    (once) who is in the way when the first attempt finds the lock busy."""
    token = secrets.token_hex(8)
    holder = {"owner": owner, "purpose": purpose, "host": platform.node(), "pid": os.getpid()}
    deadline, expired = time.monotonic() + wait_s, []
    while True:
        answer = leases.acquire_lease(lock, token, holder, exclusive=exclusive, lease_s=lease_s)
        for lapsed in answer.expired:
            expired.append(describe(lapsed))
            log.warning("lock on %s: the lease of %s lapsed without a release (its worker "
                        "was probably killed); removed it", lock, expired[-1])
        if answer.acquired:
            log.info("locked %s (%s) for %s", lock, "exclusive" if exclusive else "shared",
                     purpose)
            return Lease(leases, lock, token, lease_s, tuple(expired))
        holders = "; ".join(describe(h) for h in answer.holders)
        if time.monotonic() >= deadline:
            raise RepositoryLocked(f"{lock} is locked by {holders}; gave up after "
                                   f"{wait_s:.0f}s")
        if on_wait is not None:
            log.info("waiting for %s, locked by %s", lock, holders)
            on_wait(f"{lock}, locked by {holders}")
            on_wait = None
        time.sleep(POLL_S)


#: Seconds a backup waits for a retention run on its repository before failing.
BACKUP_WAIT_S = 600.0


@contextlib.contextmanager
def backup_lock(store: Leases, repository: Repository, owner: str, *,
                target: str | None = None, lease_s: float = LEASE_S,
                wait_s: float = BACKUP_WAIT_S,
                on_wait: Waiting | None = None) -> Iterator[tuple[str, ...]]:
    """A backup's exclusive hold on its ``target`` lock (if named), then its shared hold
    on the repository.

    Yields the lapsed holders these acquires removed, described for the session status.
    """
    with contextlib.ExitStack() as stack:
        leases = []
        if target is not None:
            leases.append(stack.enter_context(held(
                store, target, owner, exclusive=True, purpose="backup", wait_s=wait_s,
                lease_s=lease_s, on_wait=on_wait)))
        leases.append(stack.enter_context(repository_lock(
            store, repository, owner, exclusive=False, purpose="backup", wait_s=wait_s,
            lease_s=lease_s, on_wait=on_wait)))
        yield tuple(e for lease in leases for e in lease.expired)
