"""A lock's holders as one table, decided without I/O: the Kubernetes store's leases.

Redis decides acquire and renew in Lua, on the server. The Kubernetes store instead
reads the lock's ``coordination.k8s.io/v1`` Lease, decides here and writes the new
table back conditioned on the ``resourceVersion`` it read: of two writers deciding on
one table, the second's write fails with 409 and it decides again on what the first
wrote. The functions return the new table, or None when nothing is to be written.

A Lease's spec names one ``holderIdentity``; a shared lock has several holders, so the
table lives in an annotation (``HOLDERS_ANNOTATION``) as JSON, token → holder, the same
holders Redis keeps in its hash (owner, purpose, host, pid, exclusive, acquiredAtMs,
expiresAtMs). The spec summarizes it for ``kubectl get leases``.

Clocks: no write to the API server carries the server's time, so a holder's expiry is
its writer's wall clock plus the lease (as a Lease's ``renewTime`` plus
``leaseDurationSeconds``), and readers compare it with their own. This assumes the
clocks of all workers and beats agree to well within a lease, as NTP keeps cluster
nodes: a holder renews every third of its lease, so its expiry stays two thirds of a
lease (40 s of the default 60 s) ahead of its own clock, and only a reader whose clock
is ahead by more than that could take a live lease for lapsed. (client-go's leader
election avoids the assumption by timing a lease from when the reader first saw it
unchanged; that makes a fresh worker wait a whole lease before it may take over a
killed one's, where Redis and this table let it at once.)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from workers.state.base import LeaseAnswer

Holder = dict[str, Any]
Holders = dict[str, Holder]  #: token → holder

#: Annotation holding the table of holders, as JSON.
HOLDERS_ANNOTATION = "stashq.io/holders"
#: Annotation holding the lock's own name (Lease names are sanitized, see ``lease_name``).
LOCK_ANNOTATION = "stashq.io/lock"
#: Characters of the readable part of a Lease's name: a name holds at most 253.
NAME_PREFIX_CHARS = 48
#: Hex digits of the lock name's SHA-256 in the Lease's name: sanitizing maps several
#: lock names to one text, the hash keeps their Leases apart.
NAME_HASH_DIGITS = 16
LEASE_API_VERSION = "coordination.k8s.io/v1"


def lease_name(lock: str) -> str:
    """A valid object name (RFC 1123 subdomain) for ``lock``, readable and unique:
    ``repository:s3:bucket/p`` → ``stashq-repository-s3-bucket-p-<hash>``."""
    readable = re.sub(r"[^a-z0-9]+", "-", lock.lower()).strip("-")[:NAME_PREFIX_CHARS]
    digest = hashlib.sha256(lock.encode()).hexdigest()[:NAME_HASH_DIGITS]
    return "-".join(part for part in ("stashq", readable.strip("-"), digest) if part)


def holders_of(raw_lease: Mapping[str, Any] | None) -> Holders:
    """The table in a Lease (None: there is none). What cannot be read becomes a holder
    without expiry, so the next acquire reports it lapsed and drops it, as Redis does an
    entry it cannot decode."""
    annotations = ((raw_lease or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(HOLDERS_ANNOTATION)
    if text is None:
        return {}
    try:
        table = json.loads(text)
    except ValueError:
        table = None
    if not isinstance(table, dict):
        return {"unreadable": {"owner": str(text)[:80]}}
    return {str(t): h if isinstance(h, dict) else {"owner": str(h)[:80]}
            for t, h in table.items()}


def lapsed(holders: Holders, now_ms: int) -> tuple[Holders, list[Holder]]:
    """The live holders and the lapsed ones."""
    live = {t: h for t, h in holders.items() if _expires_ms(h) >= now_ms}
    return live, [h for t, h in holders.items() if t not in live]


def acquire(holders: Holders, token: str, holder: Mapping[str, Any], *, exclusive: bool,
            lease_s: float, now_ms: int) -> tuple[LeaseAnswer, Holders | None]:
    """Redis's ``_ACQUIRE_LUA`` on a table: drop lapsed holders (reported), refuse if a
    live one conflicts (an exclusive one, or any if exclusive is asked), else add
    ``token``. The table to write is None when nothing changed."""
    live, expired = lapsed(holders, now_ms)
    conflicts = [h for t, h in live.items() if t != token and (exclusive or h.get("exclusive"))]
    if conflicts:
        return LeaseAnswer(False, conflicts, expired), (live if expired else None)
    me = {**holder, "exclusive": exclusive, "acquiredAtMs": now_ms,
          "expiresAtMs": now_ms + round(lease_s * 1000)}
    return LeaseAnswer(True, [], expired), {**live, token: me}


def renew(holders: Holders, token: str, lease_s: float, now_ms: int) -> Holders | None:
    """The table with ``token``'s lease extended; None if it is gone (taken over)."""
    if token not in holders:
        return None
    return {**holders, token: {**holders[token], "expiresAtMs": now_ms + round(lease_s * 1000)}}


def release(holders: Holders, token: str) -> Holders | None:
    """The table without ``token``; None if it was not there (nothing to write)."""
    if token not in holders:
        return None
    return {t: h for t, h in holders.items() if t != token}


def lease_body(lock: str, holders: Holders, now_ms: int) -> dict[str, Any]:
    """The Lease holding ``holders``, its spec a summary for people: the holders' owners,
    the longest lease left, the time of this write (the writer's clock)."""
    longest_ms = max((_expires_ms(h) - now_ms for h in holders.values()), default=1000)
    return {"apiVersion": LEASE_API_VERSION, "kind": "Lease",
            "metadata": {"name": lease_name(lock),
                         "labels": {"app.kubernetes.io/managed-by": "stashq"},
                         "annotations": {LOCK_ANNOTATION: lock,
                                         HOLDERS_ANNOTATION: json.dumps(holders,
                                                                        sort_keys=True)}},
            "spec": {"holderIdentity": ", ".join(sorted({str(h.get("owner", "?"))
                                                          for h in holders.values()})),
                     "leaseDurationSeconds": max(1, math.ceil(longest_ms / 1000)),
                     "renewTime": micro_time(now_ms)}}


def micro_time(ms: int) -> str:
    """A MicroTime as the API server parses it: six fractional digits, UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expires_ms(holder: Mapping[str, Any]) -> float:
    try:
        return float(holder.get("expiresAtMs") or 0)
    except (TypeError, ValueError):
        return 0.0
