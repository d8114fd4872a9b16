"""A fake Kubernetes API server on loopback: just what KubeStore and the watcher use.

Why our own: kmock 0.8 answers create with 200, generates no resourceVersion, does not
isolate status from spec, ignores ``resourceVersion`` and ``timeoutSeconds`` on watches
and never answers 410 — exactly what the watcher's correctness rests on. This server
keeps the semantics of a real API server for the calls we make, over real HTTP/1.1, so
the official ``kubernetes`` client talks to it unchanged:

- every write takes the next cluster-wide ``resourceVersion``; objects get ``uid`` and
  ``creationTimestamp``; custom resources (not the built-in kinds of
  ``BUILT_IN_GROUPS``) also ``generation``, bumped when ``spec`` changes;
- ``POST`` answers 201, or 409 ``AlreadyExists``; ``GET`` one or a list (one namespace
  or all) with the list's ``resourceVersion``; ``PUT`` replaces; ``PATCH`` takes
  ``application/merge-patch+json`` only (415 otherwise); ``DELETE``;
- a ``metadata.resourceVersion`` in a ``PUT`` or ``PATCH`` body is a precondition: 409
  ``Conflict`` if the object moved on; a patch that changes nothing is not a write; a
  ``DELETE`` body's ``preconditions`` (``resourceVersion``, ``uid``) likewise;
- deleting an object deletes the objects whose ``metadata.ownerReferences`` name its
  uid, as the garbage collector does — here at once, each with its own DELETED event:
  after the owner for ``propagationPolicy: Background`` (the default), before it for
  ``Foreground``; ``Orphan`` (or ``orphanDependents: true``) instead removes that
  ownerReference from each dependant (a MODIFIED event each) and then the owner; an
  unknown policy, or both fields, is 422 ``Invalid``;
- every write is validated as the API server validates these fields: names are RFC
  1123 subdomains, annotations hold at most 256 KiB, a ``coordination.k8s.io/v1``
  Lease's ``leaseDurationSeconds`` is a positive integer and its times are MicroTime
  (RFC 3339 with exactly six fractional digits), a core/v1 Event's ``type`` is Normal
  or Warning, its ``reason`` is 1-128 characters and its ``involvedObject`` is in its
  own namespace: 422 ``Invalid`` or 400 ``BadRequest``;
- kinds of ``STATUS_GROUPS`` have the status subresource: writes to the object ignore
  ``status``, writes to ``/status`` change nothing else;
- Secrets (core v1): ``stringData`` is folded into base64 ``data``, as on a real server;
- ``?watch=true`` streams chunked JSON lines: from ``resourceVersion`` on (``""`` or
  ``"0"``: the current objects as ADDED first), until ``timeoutSeconds``; a version
  older than the compaction horizon gets an ERROR event with a 410 Status.

Test hooks: ``drop_watches()`` cuts every open watch mid-stream (no final chunk, as a
dying proxy would), ``compact()`` moves the horizon to now (older watches get 410),
``inject()`` makes the next matching requests fail with a given status, ``requests``
logs what was asked. Pods can be exec'd into (``tests/kube/pod_exec.py``; ``execs``
logs them); lists take an equality ``labelSelector``. Not implemented: set-based label
and field selectors, strategic-merge and JSON
patches, server-side apply, bookmarks, admission (schemas are checked offline), and any
validation beyond the fields above.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.servers.ports import LOOPBACK
from tests.kube.pod_exec import SUBPROTOCOL, ExecRefused, ExecSession, accept_key, choose_container

#: API groups whose kinds have the status subresource (ours; KubeDB's AppBinding has none).
STATUS_GROUPS = frozenset({"stashq.io"})
#: API groups the server serves itself (core, coordination), not through CRDs: their
#: objects here (Secrets, Leases) have no ``metadata.generation``.
BUILT_IN_GROUPS = frozenset({"", "coordination.k8s.io"})
#: An object name: an RFC 1123 subdomain (ValidateObjectMeta, NameIsDNSSubdomain).
NAME_PATTERN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
#: Characters of an object name at most.
MAX_NAME_CHARS = 253
#: Bytes of all of an object's annotations together, keys and values (apimachinery's
#: TotalAnnotationSizeLimitB).
MAX_ANNOTATIONS_BYTES = 256 * 1024
#: A MicroTime as metav1 parses it: Go's layout "2006-01-02T15:04:05.000000Z07:00" takes
#: exactly six fractional digits.
MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")
#: The first resourceVersion handed out; any opaque increasing string would do.
FIRST_VERSION = 1000
#: What a DELETE may do to the objects the deleted one owns.
PROPAGATION_POLICIES = ("Orphan", "Background", "Foreground")
#: Seconds a watch lasts when the client names no timeoutSeconds (kube: 30-60 minutes).
DEFAULT_WATCH_S = 1800.0
#: Seconds an idle keep-alive connection is kept open.
IDLE_CONNECTION_S = 60.0

_EXEC_PATH = re.compile(r"^/api/v1/namespaces/(?P<namespace>[^/]+)/pods/(?P<name>[^/]+)/exec$")
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$")

Raw = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """Where a kind is served: ``("stashq.io", "v1alpha1", "backupsessions")``."""

    group: str
    version: str
    plural: str

    @property
    def has_status(self) -> bool:
        return self.group in STATUS_GROUPS

    @property
    def has_generation(self) -> bool:
        return self.group not in BUILT_IN_GROUPS

    @property
    def label(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


LEASES = Kind("coordination.k8s.io", "v1", "leases")
EVENTS = Kind("", "v1", "events")
#: An Event's type, as ValidateEvent allows it.
EVENT_TYPES = frozenset({"Normal", "Warning"})
#: Characters of an Event's reason at most (ValidateEvent).
MAX_REASON_CHARS = 128


@dataclass(frozen=True)
class Event:
    version: int
    type: str
    kind: Kind
    namespace: str
    object: Raw


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Raw:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


@dataclass
class Fault:
    method: str
    path_suffix: str
    code: int
    times: int


def kind_of(raw: Raw) -> Kind:
    """Where an object of this apiVersion and kind is served (plural by English rule)."""
    group, _, version = str(raw["apiVersion"]).rpartition("/")
    kind = str(raw["kind"]).lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return Kind(group, version, plural)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, written again here so the fake shares no code with what it tests."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Cluster:
    """The objects, the event history and the version counter, behind one condition."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.version = FIRST_VERSION
        self.horizon = FIRST_VERSION  #: oldest version a watch may resume from
        self.objects: dict[tuple[Kind, str, str], Raw] = {}
        self.events: list[Event] = []
        self.drops = 0  #: bumped by drop_watches(); open watches compare and cut
        self.closed = False

    # --- reads ------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Raw:
        with self.changed:
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{kind.label} "{name}" not found')
            return copy.deepcopy(obj)

    def list(self, kind: Kind, namespace: str | None,
             labels: dict[str, str] | None = None) -> Raw:
        with self.changed:
            items = [copy.deepcopy(o) for (k, ns, _), o in sorted(
                self.objects.items(), key=lambda item: item[0][1:])
                if k == kind and namespace in (None, ns)
                and (labels or {}).items() <= ((o.get("metadata") or {}).get("labels")
                                               or {}).items()]
            return {"apiVersion": kind.version if not kind.group else
                    f"{kind.group}/{kind.version}", "kind": "List",
                    "metadata": {"resourceVersion": str(self.version)}, "items": items}

    # --- writes -----------------------------------------------------------------------

    def create(self, kind: Kind, namespace: str, body: Raw) -> Raw:
        metadata = body.get("metadata") or {}
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")
        if metadata.get("resourceVersion"):
            raise ApiError(400, "BadRequest",
                           "resourceVersion should not be set on objects to be created")
        if metadata.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                           "match the namespace sent on the request")
        validate(kind, name, body)
        with self.changed:
            if (kind, namespace, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{kind.label} "{name}" already exists')
            obj = _stored_form(kind, copy.deepcopy(body))
            if kind.has_status:
                obj.pop("status", None)
            obj["metadata"] = {**obj.get("metadata", {}), "namespace": namespace,
                               "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                               **({"generation": 1} if kind.has_generation else {})}
            return self._write("ADDED", kind, namespace, name, obj)

    def replace(self, kind: Kind, namespace: str, name: str, body: Raw) -> Raw:
        with self.changed:
            current = self._current(kind, namespace, name, body)
            obj = _stored_form(kind, copy.deepcopy(body))
            if kind.has_status:
                obj["status"] = current.get("status")
                obj = {k: v for k, v in obj.items() if v is not None}
            return self._update(kind, namespace, name, current, obj)

    def patch(self, kind: Kind, namespace: str, name: str, patch: Raw, *,
              status: bool) -> Raw:
        with self.changed:
            current = self._current(kind, namespace, name, patch)
            if status:
                if not kind.has_status:
                    raise ApiError(404, "NotFound", f"{kind.label} has no status subresource")
                obj = copy.deepcopy(current)
                if "status" in patch:
                    obj["status"] = merge_patch(current.get("status"), patch["status"])
            else:
                body = {k: v for k, v in patch.items() if not (kind.has_status and k == "status")}
                obj = _stored_form(kind, merge_patch(current, body))
            return self._update(kind, namespace, name, current, obj)

    def delete(self, kind: Kind, namespace: str, name: str, options: Raw) -> Raw:
        """``options``: a DeleteOptions body, whose ``preconditions`` must hold and whose
        ``propagationPolicy`` (or legacy ``orphanDependents``) says what becomes of the
        objects this one owns (``propagation``)."""
        policy = propagation(options)
        with self.changed:
            current = self._current(kind, namespace, name, {})
            wanted = options.get("preconditions") or {}
            for field, ours in (("resourceVersion", "ResourceVersion"), ("uid", "UID")):
                if wanted.get(field) and wanted[field] != current["metadata"][field]:
                    raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on '
                                   f'{kind.label} "{name}": Precondition failed: {ours} in '
                                   f"precondition: {wanted[field]}, {ours} in object meta: "
                                   f"{current['metadata'][field]}")
            uid = current["metadata"]["uid"]
            if policy == "Orphan":
                self._orphan(namespace, uid)
            elif policy == "Foreground":
                self._collect(namespace, uid)
            gone = self._remove(kind, namespace, name)
            if policy == "Background":
                self._collect(namespace, uid)
            return gone

    def _orphan(self, namespace: str, owner_uid: str) -> None:
        """What the garbage collector does for ``Orphan`` before the owner goes: every
        dependant loses its ownerReference to it (a write, with its MODIFIED event)."""
        for (kind, ns, name), obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            kept = [ref for ref in refs if ref.get("uid") != owner_uid]
            if ns != namespace or len(kept) == len(refs):
                continue
            changed = copy.deepcopy(obj)
            if kept:
                changed["metadata"]["ownerReferences"] = kept
            else:
                del changed["metadata"]["ownerReferences"]
            self._update(kind, namespace, name, obj, changed)

    def _remove(self, kind: Kind, namespace: str, name: str) -> Raw:
        current = self.objects.pop((kind, namespace, name))
        self.version += 1
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(self.version)
        self.events.append(Event(self.version, "DELETED", kind, namespace, gone))
        self.changed.notify_all()
        return gone

    def _collect(self, namespace: str, owner_uid: str) -> None:
        """The garbage collector's cascading deletion, done at once: every object of
        the namespace owned by ``owner_uid`` goes, and what those own in turn (after
        the owner for Background, before it for Foreground)."""
        owned = [key for key, obj in self.objects.items() if key[1] == namespace and any(
            ref.get("uid") == owner_uid
            for ref in obj["metadata"].get("ownerReferences") or [])]
        for kind, _, name in owned:
            uid = self.objects[(kind, namespace, name)]["metadata"]["uid"]
            self._remove(kind, namespace, name)
            self._collect(namespace, uid)

    def _current(self, kind: Kind, namespace: str, name: str, body: Raw) -> Raw:
        current = self.objects.get((kind, namespace, name))
        if current is None:
            raise ApiError(404, "NotFound", f'{kind.label} "{name}" not found')
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.label} '
                           f'"{name}": the object has been modified; please apply your '
                           "changes to the latest version and try again")
        return current

    def _update(self, kind: Kind, namespace: str, name: str, current: Raw, obj: Raw) -> Raw:
        kept = {k: current["metadata"][k] for k in ("name", "namespace", "uid",
                                                    "creationTimestamp", "generation")
                if k in current["metadata"]}
        obj["metadata"] = {**obj.get("metadata", {}), **kept,
                           "resourceVersion": current["metadata"]["resourceVersion"]}
        validate(kind, name, obj)
        if obj == current:
            return copy.deepcopy(current)  # a no-op write is no write: no version, no event
        if kind.has_generation and obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] = kept["generation"] + 1
        return self._write("MODIFIED", kind, namespace, name, obj)

    def _write(self, event: str, kind: Kind, namespace: str, name: str, obj: Raw) -> Raw:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(kind, namespace, name)] = obj
        self.events.append(Event(self.version, event, kind, namespace, copy.deepcopy(obj)))
        self.changed.notify_all()
        return copy.deepcopy(obj)

    # --- watches ----------------------------------------------------------------------

    def start_watch(self, kind: Kind, namespace: str | None,
                    since: str) -> tuple[list[Raw], int, int]:
        """Initial events, the version they bring the watch to, and the drop count."""
        with self.changed:
            if since in ("", "0"):
                initial = [{"type": "ADDED", "object": o}
                           for o in self.list(kind, namespace)["items"]]
                return initial, self.version, self.drops
            if int(since) < self.horizon:
                gone = ApiError(410, "Expired", f"too old resource version: {since} "
                                f"({self.horizon})")
                return [{"type": "ERROR", "object": gone.status()}], -1, self.drops
            return [], int(since), self.drops

    def next_events(self, kind: Kind, namespace: str | None, after: int, drops: int,
                    deadline: float) -> tuple[list[Raw], int] | None:
        """Events after version ``after`` (waiting until one comes or the deadline);
        None if the watch is to be cut."""
        with self.changed:
            while True:
                if self.closed or self.drops != drops:
                    return None
                fresh = [e for e in self.events if e.version > after]
                if fresh or time.monotonic() >= deadline:
                    break
                self.changed.wait(timeout=max(0.0, deadline - time.monotonic()))
            mine = [{"type": e.type, "object": copy.deepcopy(e.object)} for e in fresh
                    if e.kind == kind and namespace in (None, e.namespace)]
            return mine, (fresh[-1].version if fresh else after)


def propagation(options: Raw) -> str:
    """The DeleteOptions' policy: ``propagationPolicy``, else ``orphanDependents``, else
    Background (the default for custom resources); 422 as the API server answers a
    policy it does not know or both fields at once."""
    policy, orphan = options.get("propagationPolicy"), options.get("orphanDependents")
    if policy is not None and orphan is not None:
        raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: '
                       f'propagationPolicy: Invalid value: "{policy}": orphanDependents and '
                       "deletionPropagation cannot be both set")
    if policy is None:
        return "Orphan" if orphan else "Background"
    if policy not in PROPAGATION_POLICIES:
        raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: '
                       f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                       '"Foreground", "Background", "Orphan"')
    return str(policy)


def validate(kind: Kind, name: str, obj: Raw) -> None:
    """Refuse what the API server refuses of the fields this server knows (see above)."""
    def invalid(field: str, detail: str) -> ApiError:
        return ApiError(422, "Invalid", f'{kind.label} "{name}" is invalid: {field}: {detail}')

    if len(name) > MAX_NAME_CHARS or not NAME_PATTERN.fullmatch(name):
        raise invalid("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                      "subdomain must consist of lower case alphanumeric characters, '-' "
                      "or '.', and must start and end with an alphanumeric character")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        raise invalid("metadata.annotations", f"Too long: must have at most "
                      f"{MAX_ANNOTATIONS_BYTES} bytes")
    if kind == LEASES:
        _validate_lease(obj.get("spec") or {}, invalid)
    if kind == EVENTS:
        _validate_event(obj, invalid)


def _validate_event(event: Raw, invalid: Callable[[str, str], ApiError]) -> None:
    """What ValidateEvent checks of a core/v1 Event written the legacy way."""
    involved = event.get("involvedObject") or {}
    namespace = (event.get("metadata") or {}).get("namespace")
    if involved.get("namespace") != namespace:
        raise invalid("involvedObject.namespace", f"Invalid value: "
                      f"{json.dumps(involved.get('namespace'))}: does not match event.namespace")
    if event.get("type") not in EVENT_TYPES:
        raise invalid("type", f"Unsupported value: {json.dumps(event.get('type'))}: supported "
                      'values: "Normal", "Warning"')
    reason = event.get("reason")
    if not isinstance(reason, str) or not reason or len(reason) > MAX_REASON_CHARS:
        raise invalid("reason", f"Invalid value: {json.dumps(reason)}: must be 1 to "
                      f"{MAX_REASON_CHARS} characters")


def _validate_lease(spec: Raw, invalid: Callable[[str, str], ApiError]) -> None:
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is not None and not (isinstance(value, str) and MICRO_TIME.fullmatch(value)):
            raise ApiError(400, "BadRequest", f"spec.{field}: parsing time {json.dumps(value)}"
                           ' as "2006-01-02T15:04:05.000000Z07:00": cannot parse')
    for field, least in (("leaseDurationSeconds", 1), ("leaseTransitions", 0)):
        value = spec.get(field)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(400, "BadRequest", f"spec.{field}: cannot unmarshal "
                           f"{type(value).__name__} into an int32")
        if value < least:
            raise invalid(f"spec.{field}", f"Invalid value: {value}: must be greater than "
                          f"{'0' if least else 'or equal to 0'}")


def _stored_form(kind: Kind, obj: Raw) -> Raw:
    """What the server stores: a Secret's stringData folded into base64 data."""
    if kind.plural == "secrets" and not kind.group and obj.get("stringData"):
        data = dict(obj.get("data") or {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    return obj


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_S
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body()
        self.server.api.requests.append((method, url.path, query))
        try:
            self.server.api.check_faults(method, url.path)
            if (exec_match := _EXEC_PATH.match(url.path)) is not None:
                self._exec(exec_match, parse_qs(url.query))
                return
            match = _PATH.match(url.path)
            if match is None:
                raise ApiError(404, "NotFound", f"the server could not find {url.path}")
            if method == "GET" and not match["name"] and query.get("watch") in ("true", "1"):
                self._watch(match, query)
                return
            code, answer = self._route(method, match, body)
        except ApiError as e:
            code, answer = e.code, e.status()
        self._send(code, answer)

    def _route(self, method: str, m: re.Match[str], body: Raw) -> tuple[int, Raw]:
        cluster = self.server.api.cluster
        kind = Kind(m["group"] or "", m["version"] or m["core"], m["plural"])
        namespace, name = m["namespace"], m["name"]
        if name and namespace is None:
            raise ApiError(404, "NotFound", "cluster-scoped kinds are not served here")
        if method == "GET":
            return 200, (cluster.get(kind, namespace, name) if name
                         else cluster.list(kind, namespace, self._labels()))
        if method == "POST" and namespace and not name:
            return 201, cluster.create(kind, namespace, body)
        if method == "PUT" and name and not m["sub"]:
            return 200, cluster.replace(kind, namespace, name, body)
        if method == "PATCH" and name:
            if self.headers.get("Content-Type", "").split(";")[0] != \
                    "application/merge-patch+json":
                raise ApiError(415, "UnsupportedMediaType",
                               "only application/merge-patch+json is implemented")
            return 200, cluster.patch(kind, namespace, name, body, status=bool(m["sub"]))
        if method == "DELETE" and name:
            return 200, cluster.delete(kind, namespace, name, {**self._delete_query(), **body})
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _delete_query(self) -> Raw:
        """DeleteOptions fields given as query parameters (the body's win)."""
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        options: Raw = {}
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = query["orphanDependents"] == "true"
        return options

    def _labels(self) -> dict[str, str]:
        """``?labelSelector=a=b,c=d`` (equality only) as a mapping."""
        query = parse_qs(urlsplit(self.path).query)
        selector = (query.get("labelSelector") or [""])[-1]
        return dict(term.split("=", 1) for term in selector.split(",") if "=" in term)

    def _exec(self, m: re.Match[str], query: dict[str, list[str]]) -> None:
        """A pod exec (``tests/kube/pod_exec.py``): refused with a Status, or upgraded."""
        api, name = self.server.api, m["name"]
        container = (query.get("container") or [None])[-1]
        command = query.get("command") or []
        try:
            pod = api.cluster.get(Kind("", "v1", "pods"), m["namespace"], name)
            chosen = choose_container(pod, name, container)
        except ExecRefused as e:
            raise ApiError(e.code, e.reason, e.message) from None
        api.execs.append((m["namespace"], name, str(chosen.get("name")), command))
        self.close_connection = True
        self.connection.settimeout(None)  # an exec may be silent for longer than idle
        self.wfile.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
            % (accept_key(self.headers.get("Sec-WebSocket-Key", "")).encode(),
               SUBPROTOCOL.encode()))
        self.wfile.flush()

        def write(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        ExecSession(self.connection, write, command, chosen).run()

    def _watch(self, m: re.Match[str], query: dict[str, str]) -> None:
        cluster = self.server.api.cluster
        kind = Kind(m["group"] or "", m["version"] or m["core"], m["plural"])
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_S)
        events, after, drops = cluster.start_watch(kind, m["namespace"],
                                                   query.get("resourceVersion", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.server.api.open_watches += 1
        try:
            while after >= 0:
                for event in events:
                    self._chunk(json.dumps(event).encode() + b"\n")
                if time.monotonic() >= deadline:
                    break
                batch = cluster.next_events(kind, m["namespace"], after, drops, deadline)
                if batch is None:  # cut like a dying proxy: no final chunk, just gone
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                events, after = batch
            for event in events if after < 0 else ():
                self._chunk(json.dumps(event).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            self.server.api.open_watches -= 1

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _body(self) -> Raw:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {}
        return parsed if isinstance(parsed, dict) else {}

    def _send(self, code: int, answer: Raw) -> None:
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeKubeAPI


class FakeKubeAPI:
    """``with FakeKubeAPI() as api:`` a server at ``api.url`` until the block ends."""

    def __init__(self) -> None:
        self.cluster = Cluster()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        #: Each exec run: namespace, pod, container, command.
        self.execs: list[tuple[str, str, str, list[str]]] = []
        self.open_watches = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server = _Server((LOOPBACK, 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-kube-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cluster.changed:
            self.cluster.closed = True
            self.cluster.changed.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # --- test hooks -------------------------------------------------------------------

    def drop_watches(self) -> None:
        """Cut every open watch mid-stream, as a restarting API server or proxy would."""
        with self.cluster.changed:
            self.cluster.drops += 1
            self.cluster.changed.notify_all()

    def compact(self) -> None:
        """Forget history: a watch resuming from any version before now gets 410 Gone."""
        with self.cluster.changed:
            self.cluster.horizon = self.cluster.version + 1

    def inject(self, method: str, path_suffix: str, code: int, times: int = 1) -> None:
        """Answer the next ``times`` requests ``method …path_suffix`` with ``code``."""
        with self._lock:
            self._faults.append(Fault(method, path_suffix, code, times))

    def check_faults(self, method: str, path: str) -> None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method == method and path.endswith(
                        fault.path_suffix):
                    fault.times -= 1
                    reason = {409: "Conflict", 500: "InternalError"}.get(fault.code, "Injected")
                    raise ApiError(fault.code, reason, f"injected {fault.code} for a test")

    def watch_requests(self, plural: str) -> list[dict[str, str]]:
        """The query of every watch request on ``plural`` so far."""
        return [q for m, p, q in list(self.requests)
                if m == "GET" and p.endswith(f"/{plural}") and q.get("watch") == "true"]

    # --- acting as kubectl, in process --------------------------------------------------

    def create(self, raw: Raw) -> Raw:
        """``kubectl create`` of any object, valid or not (no admission here)."""
        namespace = (raw.get("metadata") or {}).get("namespace") or "default"
        return self.cluster.create(kind_of(raw), namespace, raw)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "default") -> Raw:
        return self.cluster.get(kind_of({"apiVersion": api_version, "kind": kind}),
                                namespace, name)

    def events_about(self, kind: str, name: str, namespace: str = "default") -> list[Raw]:
        """The Events whose involvedObject is this object, oldest first, as ``kubectl
        describe`` lists them."""
        events = self.cluster.list(EVENTS, namespace)["items"]
        mine = [e for e in events if (e.get("involvedObject") or {}).get("kind") == kind
                and e["involvedObject"].get("name") == name]
        return sorted(mine, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def objects(self, api_version: str, kind: str) -> Iterator[Raw]:
        yield from self.cluster.list(kind_of({"apiVersion": api_version, "kind": kind}),
                                     None)["items"]
