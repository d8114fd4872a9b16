"""Kubernetes Events of status transitions, written by ``KubeStore`` after each status
patch (``workflows/events.py`` decides which and says what).

Events are a record for people, as client-go's recorder treats them: one that cannot be
written (RBAC without ``events``, the API server busy) is logged and never fails the
status patch it tells of. A BackupSession's Event is told on its BackupConfiguration
too: the owner reference gives the configuration's uid (``kubectl describe`` matches
Events by uid); a session without one (made by hand) costs one read of it.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

from workflows.events import EventFields, event_body, told_on_invoker, transition_events

log = logging.getLogger(__name__)

RawDict = dict[str, Any]
#: Reads an object of a kind by name and namespace (``KubeStore.get_raw``).
GetRaw = Callable[[str, str, str], RawDict]


class EventRecorder:
    """Writes the Events of each status patch; never raises."""

    def __init__(self, core: Any, get_raw: GetRaw, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._core, self._get_raw, self._clock = core, get_raw, clock
        self.instance = platform.node()

    def record(self, kind: str, patch: Mapping[str, Any], updated: RawDict) -> None:
        """The Events of ``patch``, applied to the object now ``updated``."""
        try:
            for fields in transition_events(kind, patch, updated.get("status") or {}):
                self._emit(updated, fields)
                if kind == "BackupSession":
                    self._tell_invoker(updated, fields)
        except Exception as e:  # a record for people; the patch it tells of stands
            log.warning("no Event for %s %s: %s: %s", kind,
                        (updated.get("metadata") or {}).get("name"), type(e).__name__, e)

    def _tell_invoker(self, session: RawDict, fields: EventFields) -> None:
        metadata = session.get("metadata") or {}
        config = invoker_of(session)
        if config is None:
            return
        owner = next((o for o in metadata.get("ownerReferences") or []
                      if o.get("kind") == "BackupConfiguration" and o.get("name") == config),
                     None)
        if owner is not None:
            involved: RawDict = {"apiVersion": owner.get("apiVersion"), "kind": owner["kind"],
                                 "metadata": {"name": config, "uid": owner.get("uid"),
                                              "namespace": metadata.get("namespace")}}
        else:
            involved = self._get_raw("BackupConfiguration", config,
                                     str(metadata.get("namespace")))
        self._emit(involved, told_on_invoker(str(metadata.get("name")), fields))

    def _emit(self, involved: RawDict, fields: EventFields) -> None:
        body = event_body(involved, fields, now=self._clock(), instance=self.instance)
        namespace = body["metadata"]["namespace"]
        try:
            response = self._core.create_namespaced_event(namespace, body,
                                                          _preload_content=False)
        except Exception as e:  # the client's ApiException: its status and message only
            code = getattr(e, "status", None)
            if code is None:
                raise
            raise RuntimeError(f"the API answered {code}: {_message(e)}") from e
        try:  # read to the end, or the pooled connection carries it into the next request
            response.read()
        finally:
            response.release_conn()


def invoker_of(session: Mapping[str, Any]) -> str | None:
    """The BackupConfiguration a BackupSession names (None: an ad-hoc one names none)."""
    invoker = (session.get("spec") or {}).get("invoker") or {}
    if invoker.get("kind", "BackupConfiguration") != "BackupConfiguration":
        return None
    name = invoker.get("name")
    return str(name) if name else None


def _message(e: Exception) -> str:
    reason = getattr(e, "reason", "")
    try:
        return str(json.loads(getattr(e, "body", None) or "").get("message") or reason)
    except (ValueError, AttributeError):
        return str(reason)
