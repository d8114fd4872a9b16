"""The Kubernetes event source: each new BackupSession or RestoreSession becomes one
queued chain, whoever created it (beat, ``stashq trigger``, ``kubectl create``).

One loop per kind, kopf's shape: list (every object is handled as if just added; the
list's ``resourceVersion`` is where the watch starts), then watch from the last version
handled. A watch that ends (``timeoutSeconds``) or drops resumes from that version;
``410 Gone`` lists again; any other failure waits (doubling backoff) and resumes, so
the event that failed is handled again. Nothing is lost because a list sees every
object; nothing is queued twice because the claim decides, not the event.

Exactly once — claim, then queue:

- A session is *new* while its phase is Pending (or unset: created by kubectl) and its
  status holds neither ``claim`` nor ``taskId``.
- The watcher claims it with a status patch ``claim: {by, at}`` that carries the
  ``resourceVersion`` it saw: the API server applies it only if the object did not
  change since. Of two watchers, or of one watcher seeing the same object again on a
  replayed event or a relist, exactly one patch wins; the others get 409, read the
  object again, and find it claimed.
- Only the winner queues the chain; ``dispatch`` records ``taskId`` and ``queuedAt``.
  If queuing fails, the session is marked Failed with the reason (never retried into a
  second chain). A watcher killed between claim and queue (a window of milliseconds)
  leaves a claim without ``taskId``: after ``stale_claim_s`` a watcher marks that
  session Failed, saying so. At most once, and always a final phase with a reason.

Bad objects: a session the parser rejects gets phase Failed, the parser's sentence as
``reason`` and ``conditions.ValidationPassed: "False"`` (once; the conditional patch
makes a concurrent fix win), and the watch goes on. Configurations are only logged
and announced here: their status (Ready / Invalid) is the scheduler's to write, and it
lists them itself, so a change reaches it within a tick (``on_configuration`` wakes it
sooner where it is wired).
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from beat.dispatch import queue_or_fail
from workers.context import SESSION_KINDS, SessionRef
from workers.state.base import (
    INITIAL_PHASE_ANNOTATION,
    ResourceVersionExpired,
    WatchStore,
)
from workers.steps.session import now_iso
from workflows.errors import InvalidResource, NotFound, TransientStorageError
from workflows.parsing import parse_resource
from workflows.phases import FINAL_PHASES, Phase, failed

log = logging.getLogger(__name__)

RawDict = dict[str, Any]
#: The kinds watched, each in its own loop.
WATCHED = ("BackupConfiguration", "BackupSession", "RestoreSession")
EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})
SessionState = Literal["new", "claimed", "stale", "done"]


@dataclass(frozen=True)
class WatchSettings:
    #: Seconds one watch request lasts before the server ends it and the loop resumes:
    #: well under the API server's own 30-60 min, so a silently dead path is noticed.
    watch_timeout_s: int = 300
    #: Seconds of the first pause after a failure; doubles with each failure in a row.
    backoff_initial_s: float = 0.5
    #: Longest pause between reconnects, seconds: an API server back from an outage is
    #: found within this.
    backoff_max_s: float = 30.0
    #: Seconds after which a claim without a queued chain means its watcher died between
    #: claim and queue (a window of milliseconds); above any clock skew between nodes.
    stale_claim_s: float = 120.0
    #: Reads of a session whose claim met a conflict before giving up until its next
    #: event (each conflict means someone else wrote first, usually the other claimant).
    claim_attempts: int = 5


def backoff_s(failures: int, settings: WatchSettings) -> float:
    """Pause after ``failures`` failures in a row: 0.5, 1, 2, … capped at the maximum."""
    return float(min(settings.backoff_max_s,
                     settings.backoff_initial_s * 2 ** max(0, failures - 1)))


def session_state(raw: Mapping[str, Any], now: float, stale_claim_s: float) -> SessionState:
    """Where a session is on its way into the queue, from its status (and, before the
    first status write, the phase it was created with)."""
    status = raw.get("status") or {}
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    phase = status.get("phase") or annotations.get(INITIAL_PHASE_ANNOTATION) or Phase.PENDING
    if phase != Phase.PENDING or status.get("taskId") or status.get("queuedAt"):
        return "done"
    claim = status.get("claim")
    if not isinstance(claim, dict):
        return "new"
    try:
        claimed_at = datetime.fromisoformat(str(claim.get("at")).replace("Z", "+00:00"))
    except ValueError:
        return "stale"
    return "stale" if now - claimed_at.timestamp() > stale_claim_s else "claimed"


def default_identity() -> str:
    """Who claims: host, process and a random part (two watchers in one process differ)."""
    return f"{platform.node()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class Watcher:
    def __init__(self, store: WatchStore, dispatch: Callable[[SessionRef], object], *,
                 settings: WatchSettings | None = None, namespace: str | None = None,
                 identity: str | None = None,
                 on_configuration: Callable[[str, str, str], object] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.dispatch = store, dispatch
        self.settings = settings or WatchSettings()
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.on_configuration = on_configuration
        self.clock = clock
        #: Per kind: the version handled last ("" = list first).
        self.versions: dict[str, str] = {}
        self._stopped = threading.Event()

    # --- the loops ----------------------------------------------------------------------

    def run(self) -> None:
        """Watch every kind, one thread each, until ``stop()``."""
        threads = [threading.Thread(target=self.watch_kind, args=(kind,), daemon=True,
                                    name=f"watch-{kind}") for kind in WATCHED]
        for thread in threads:
            thread.start()
        while not self._stopped.wait(1.0):
            pass
        for thread in threads:  # each ends after its current watch request
            thread.join(timeout=1.0)

    def stop(self) -> None:
        self._stopped.set()

    def watch_kind(self, kind: str, *, _iterations: int | None = None) -> None:
        """List, then watch and resume, forever (or ``_iterations`` requests, for tests)."""
        failures = 0
        while not self._stopped.is_set() and (_iterations is None or _iterations > 0):
            if _iterations is not None:
                _iterations -= 1
            try:
                self.step(kind)
                failures = 0
            except ResourceVersionExpired as e:
                log.warning("%s: %s; listing again", kind, e)
                self.versions[kind] = ""
            except Exception as e:  # the watcher outlives any one failure
                if self._stopped.is_set():
                    return
                failures += 1
                pause = backoff_s(failures, self.settings)
                if isinstance(e, TransientStorageError):
                    log.warning("watch of %s failed (%s); resuming from version %s in %.1fs",
                                kind, e, self.versions.get(kind) or "(list)", pause)
                else:
                    log.exception("watch of %s failed; resuming in %.1fs", kind, pause)
                self._stopped.wait(pause)

    def step(self, kind: str) -> None:
        """One request: a list if there is no version to resume from, else one watch."""
        version = self.versions.get(kind)
        if not version:
            items, version = self.store.list_versioned(kind, self.namespace)
            for raw in items:
                self.handle(kind, "ADDED", raw)
            self.versions[kind] = version
            return
        for event in self.store.watch(kind, self.namespace, version,
                                      self.settings.watch_timeout_s):
            self.handle_event(kind, event)
            seen = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion")
            if seen:
                self.versions[kind] = str(seen)
            if self._stopped.is_set():
                return

    # --- one object -----------------------------------------------------------------------

    def handle_event(self, kind: str, event: RawDict) -> None:
        event_type = event.get("type")
        if event_type == "BOOKMARK":
            return
        if event_type not in EVENT_TYPES or not isinstance(event.get("object"), dict):
            log.error("watch of %s sent an event of unknown type %r; ignored: %.300s",
                      kind, event_type, event)
            return
        self.handle(kind, str(event_type), event["object"])

    def handle(self, kind: str, event_type: str, raw: RawDict) -> None:
        metadata = raw.get("metadata") or {}
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        if kind == "BackupConfiguration":
            self._configuration(event_type, raw, namespace, name)
        elif event_type != "DELETED":
            try:
                parse_resource(raw, source=f"namespace {namespace}")
            except InvalidResource as e:
                self._report_invalid(kind, raw, e)
                return
            self._session(kind, raw, namespace, name)

    def _configuration(self, event_type: str, raw: RawDict, namespace: str, name: str) -> None:
        if event_type != "DELETED":
            try:
                parse_resource(raw, source=f"namespace {namespace}")
            except InvalidResource as e:
                log.error("%s (the scheduler reports it in its status)", e)
        if self.on_configuration is not None:
            self.on_configuration(event_type, namespace, name)

    def _session(self, kind: str, raw: RawDict, namespace: str, name: str) -> None:
        state = session_state(raw, self.clock(), self.settings.stale_claim_s)
        ref = SessionRef(kind, namespace, name)
        if state == "stale":
            self._fail_stale(ref, raw)
        elif state == "new" and self._claim(ref, raw):
            self._queue(ref)

    def _claim(self, ref: SessionRef, raw: RawDict) -> bool:
        claim = {"claim": {"by": self.identity, "at": now_iso()}}
        for _ in range(self.settings.claim_attempts):
            version = str(raw["metadata"]["resourceVersion"])
            if self.store.patch_status_if(ref.kind, ref.name, ref.namespace, version, claim):
                return True
            try:
                raw = self.store.get_raw(ref.kind, ref.name, ref.namespace)
            except NotFound:
                return False
            if session_state(raw, self.clock(), self.settings.stale_claim_s) != "new":
                return False  # claimed or queued by someone else: theirs
        log.warning("%s kept changing while being claimed; its next event tries again", ref)
        return False

    def _queue(self, ref: SessionRef) -> None:
        if queue_or_fail(self.dispatch, self.store, ref):
            log.info("queued %s (claimed by %s)", ref, self.identity)

    def _fail_stale(self, ref: SessionRef, raw: RawDict) -> None:
        claim = (raw.get("status") or {}).get("claim") or {}
        reason = (f"never queued: watcher {claim.get('by')} claimed it at {claim.get('at')} "
                  "and stopped before queuing it; create a new session to run it")
        if self.store.patch_status_if(ref.kind, ref.name, ref.namespace,
                                      str(raw["metadata"]["resourceVersion"]),
                                      failed(reason, now=self.clock())):
            log.error("%s: %s", ref, reason)

    def _report_invalid(self, kind: str, raw: RawDict, error: InvalidResource) -> None:
        status = raw.get("status") or {}
        metadata = raw.get("metadata") or {}
        log.error("%s", error)
        if status.get("phase") in FINAL_PHASES or kind not in SESSION_KINDS:
            return  # reported already (or finished before it was edited)
        self.store.patch_status_if(
            kind, str(metadata.get("name")), str(metadata.get("namespace")),
            str(metadata.get("resourceVersion")),
            failed(str(error), now=self.clock(), conditions={"ValidationPassed": "False"}))
