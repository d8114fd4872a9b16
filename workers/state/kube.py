"""Resources, Secrets and status on the Kubernetes API server: the store in a cluster.

The only module that imports ``kubernetes``. Every failure of the client becomes our
error tree in ``api_errors``, chained ``from`` the original:

    404 Not Found                    NotFound (kind, name, namespace)
    409 Conflict / AlreadyExists     Conflict (handled here: create → False, patch → retry)
    410 Gone                         ResourceVersionExpired (the watcher lists again)
    400 / 422                        InvalidResource (the server's message)
    401 / 403                        StorageError (a permission to grant)
    429, 5xx, dropped connection     TransientStorageError

The hard part is concurrency, and the API server arbitrates it:

- ``create`` is a POST; ``409 AlreadyExists`` means another replica made the same
  deterministic session name first (the exactly-once arbiter, as ``SET NX`` in Redis).
- Status is written only through the status subresource, as a JSON merge patch: spec
  writes cannot touch it and status writes cannot touch spec. The server applies a
  merge patch without a ``resourceVersion`` atomically, so concurrent patches lose no
  field; a ``409 Conflict`` it still answers is retried here.
- ``patch_status_if`` puts the ``resourceVersion`` the caller saw into the patch, so
  the server applies it only if the object did not change since: the watcher's claim.
- ``patch_status_where`` reads the status, compares the fields it is conditioned on and
  patches at the version it read; a write in between (a heartbeat, say) makes it read
  and compare again: the step's claim of a session.
- ``apply`` replaces spec and metadata (PUT) at the version just read; a conflict
  reads again and retries (last writer wins, as ``kubectl replace``).
- Every status patch is told as the core/v1 Events of the transition it makes
  (``kube_events.py``), on the object and, for a BackupSession, on its configuration.
- Locks are ``coordination.k8s.io/v1`` Leases in one namespace (``lease_namespace``),
  one per lock: read, decided by ``lease_table`` (which says how holders are kept and
  what it assumes of clocks), written at the version read, decided again on a 409.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

import workers.state.lease_table as lease_table
from workers.state.base import (
    INITIAL_PHASE_ANNOTATION,
    Feed,
    LeaseAnswer,
    RawObject,
    ResourceVersionExpired,
    raw_object,
    status_matches,
)
from workers.state.feeds import WatchFeed
from workers.state.kube_events import EventRecorder
from workers.state.kube_exec import exec_in_pod
from workers.state.lease_table import Holders
from workflows.errors import (
    InvalidResource,
    NotFound,
    StashQError,
    StorageError,
    Transient,
    TransientStorageError,
)
from workflows.parsing import parse_as
from workflows.resources import Resource
from workflows.resources.hooks import PodSelector

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Resource)
T = TypeVar("T")
RawDict = dict[str, Any]
RawDicts = list[RawDict]  # an alias: inside KubeStore, ``list`` names a method
RawObjects = list[RawObject]
Created = list[bool | None]

#: Tries of a write answered ``409 Conflict`` before giving up (each after a short pause).
CONFLICT_ATTEMPTS = 8
#: Seconds before the n-th retry of a conflicting write: n × this (0.05, 0.1, 0.15 …).
CONFLICT_PAUSE_S = 0.05
#: Seconds to open a connection to the API server: it is near; longer means it is down.
CONNECT_TIMEOUT_S = 10.0
#: Seconds a watch may stay silent past its own ``timeoutSeconds`` before the client
#: gives up: catches a connection that died without a FIN (a node or proxy gone).
WATCH_READ_GRACE_S = 30.0
#: Connections kept to the API server: a worker's steps and the watcher's three watches.
POOL_CONNECTIONS = 16
#: Metadata a write sends; the server owns the rest (uid, resourceVersion, managedFields).
WRITTEN_METADATA = ("name", "namespace", "labels", "annotations", "ownerReferences",
                    "finalizers")
#: Seconds this machine's clock may differ from the API server's (its ``Date`` header,
#: whole seconds) before the store warns: lease expiry compares workers' clocks.
CLOCK_SKEW_WARN_S = 5.0


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


SECRETS = ApiResource("", "v1", "secrets")
#: Kind → where it is served. Ours under stashq.io; AppBinding where KubeDB serves it.
API_RESOURCES: dict[str, ApiResource] = {
    "Repository": ApiResource("stashq.io", "v1alpha1", "repositories"),
    "BackupConfiguration": ApiResource("stashq.io", "v1alpha1", "backupconfigurations"),
    "BackupSession": ApiResource("stashq.io", "v1alpha1", "backupsessions"),
    "RestoreSession": ApiResource("stashq.io", "v1alpha1", "restoresessions"),
    "Task": ApiResource("stashq.io", "v1alpha1", "tasks"),
    "Function": ApiResource("stashq.io", "v1alpha1", "functions"),
    "HookTemplate": ApiResource("stashq.io", "v1alpha1", "hooktemplates"),
    "RestoreDrill": ApiResource("stashq.io", "v1alpha1", "restoredrills"),
    "AppBinding": ApiResource("appcatalog.appscode.com", "v1alpha1", "appbindings"),
    "Secret": SECRETS,
}


class Conflict(StashQError, Transient):
    """409: the name is taken, or the object changed since the version a write named."""


def api_resource(kind: str) -> ApiResource:
    try:
        return API_RESOURCES[kind]
    except KeyError:
        raise NotFound(f'kind "{kind}" is not served by the Kubernetes store') from None


@contextlib.contextmanager
def api_errors(kind: str, name: str = "", namespace: str | None = None) -> Iterator[None]:
    """Translate the client's exceptions raised inside into StashQ's error tree."""
    try:
        yield
    except ApiException as e:
        raise status_error(e.status or 0, _message(e), kind, name, namespace) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise TransientStorageError(f"the Kubernetes API is unreachable or stopped "
                                    f"answering: {e}") from e


def status_error(code: int, message: str, kind: str, name: str = "",
                 namespace: str | None = None) -> StashQError:
    """The error for an API answer (or a watch ERROR event) with HTTP status ``code``."""
    what = f'{kind} "{name}"' if name else f"{kind} objects"
    where = f' in namespace "{namespace}"' if namespace else ""
    if code == 404:
        if name:
            return NotFound(f"{what} not found{where}")
        return NotFound(f"{what}: the API server does not serve them; is the CRD of "
                        f"{api_resource(kind).plural}.{api_resource(kind).group} installed?")
    if code == 409:
        return Conflict(f"{what}{where}: {message}")
    if code == 410:
        return ResourceVersionExpired(f"watch of {what}: {message}")
    if code in (400, 422):
        return InvalidResource(message, source="Kubernetes API", kind=kind, name=name)
    if code in (401, 403):
        return StorageError(f"the Kubernetes API refused access to {what}{where}: {message} "
                            "(check the service account's RBAC)")
    if code == 429 or code >= 500 or code == 0:
        return TransientStorageError(f"the Kubernetes API failed on {what}{where}: "
                                     f"{code} {message}")
    return StorageError(f"the Kubernetes API answered {code} for {what}{where}: {message}")


def _message(e: ApiException) -> str:
    try:
        body = json.loads(e.body or "")
    except ValueError:
        return str(e.reason or "")
    return str(body.get("message") or e.reason or "") if isinstance(body, dict) else str(body)


def api_client(kubeconfig: str = "") -> client.ApiClient:
    """A client for ``kubeconfig``; without one, in-cluster, then ``~/.kube/config``."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration)
        else:
            try:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration)
            except config.ConfigException:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration)
    except (config.ConfigException, OSError) as e:
        where = kubeconfig or "in-cluster service account or ~/.kube/config"
        raise StashQError(f"cannot configure the Kubernetes client from {where}: {e}") from e
    configuration.connection_pool_maxsize = POOL_CONNECTIONS
    return client.ApiClient(configuration)


class KubeStore:
    """A ``ResourceStore`` (and the watcher's source) on the Kubernetes API."""

    def __init__(self, api: client.ApiClient, lease_namespace: str = "default", *,
                 clock: Callable[[], float] = time.time) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._coordination = client.CoordinationV1Api(api)
        #: Where the Leases of every lock live: the same for every worker and beat.
        self.lease_namespace = lease_namespace
        self._clock = clock  #: wall clock of lease expiry (see ``lease_table``)
        self._skew_reported = False
        #: Events of each status transition (``kube_events.py``): for ``kubectl describe``.
        self._events = EventRecorder(self._core, self.get_raw, clock=clock)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str = "", lease_namespace: str = "default",
                        ) -> KubeStore:
        return cls(api_client(kubeconfig), lease_namespace)

    # --- ResourceStore -------------------------------------------------------------

    def get(self, cls: type[R], name: str, namespace: str) -> R:
        return _parse(cls, self.get_raw(cls.KIND, name, namespace))

    def list(self, cls: type[R], namespace: str | None = None) -> list[R]:
        items, _ = self.list_versioned(cls.KIND, namespace)
        return [_parse(cls, raw) for raw in items]

    def apply(self, resource: Resource) -> None:
        kind, name, namespace = resource.kind, resource.name, resource.namespace
        body = _body(resource)
        for attempt in range(CONFLICT_ATTEMPTS):
            body["metadata"].pop("resourceVersion", None)  # a create must not name one
            try:
                self._create(kind, namespace, body)
                return
            except Conflict:
                pass
            current = self.get_raw(kind, name, namespace)
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                self._replace(kind, name, namespace, body)
                return
            except Conflict:
                _pause(attempt, f'{kind} "{name}" changed while being replaced')
        raise TransientStorageError(f'{kind} "{name}" kept changing; gave up replacing it '
                                    f"after {CONFLICT_ATTEMPTS} tries")

    def create(self, resource: Resource) -> bool:
        body = _body(resource)
        if resource.status.get("phase"):  # visible from the first event on (see base.py)
            annotations = body["metadata"].setdefault("annotations", {})
            annotations[INITIAL_PHASE_ANNOTATION] = str(resource.status["phase"])
        try:
            self._create(resource.kind, resource.namespace, body)
        except Conflict:
            return False
        if resource.status:  # the server drops status on create; it has its own door
            self.patch_status(type(resource), resource.name, resource.namespace,
                              resource.status)
        return True

    def patch_status(self, cls: type[Resource], name: str, namespace: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                updated = self._patch_status(cls.KIND, name, namespace, {"status": patch})
                return dict(updated.get("status") or {})
            except Conflict:
                _pause(attempt, f'status of {cls.KIND} "{name}" conflicted')
        raise TransientStorageError(f'status of {cls.KIND} "{name}" kept conflicting; gave up '
                                    f"after {CONFLICT_ATTEMPTS} tries")

    def patch_status_where(self, cls: type[Resource], name: str, namespace: str,
                           expect: Mapping[str, Any],
                           patch: dict[str, Any]) -> dict[str, Any] | None:
        for attempt in range(CONFLICT_ATTEMPTS):
            raw = self.get_raw(cls.KIND, name, namespace)
            if not status_matches(raw.get("status") or {}, expect):
                return None
            body = {"metadata": {"resourceVersion": raw["metadata"]["resourceVersion"]},
                    "status": patch}
            try:
                updated = self._patch_status(cls.KIND, name, namespace, body)
                return dict(updated.get("status") or {})
            except Conflict:
                _pause(attempt, f'status of {cls.KIND} "{name}" changed while being compared')
        raise TransientStorageError(f'status of {cls.KIND} "{name}" kept changing; gave up '
                                    f"after {CONFLICT_ATTEMPTS} tries")

    def delete(self, cls: type[Resource], name: str, namespace: str, *,
               orphan: bool = False) -> None:
        """Delete with ``propagationPolicy`` Background (the garbage collector deletes
        what the object owns) or Orphan (it strips their ownerReferences instead)."""
        r = api_resource(cls.KIND)
        options = client.V1DeleteOptions(propagation_policy="Orphan" if orphan else "Background")
        try:
            with api_errors(cls.KIND, name, namespace):
                if r is SECRETS:
                    self._core.delete_namespaced_secret(name, namespace, body=options,
                                                        _preload_content=False)
                else:
                    self._custom.delete_namespaced_custom_object(
                        r.group, r.version, namespace, r.plural, name, body=options)
        except NotFound:
            pass

    def exec_in_pod(self, namespace: str, pod: PodSelector, container: str | None,
                    command: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """An exec hook in a pod (``workers/state/kube_exec.py``; ``PodExec``)."""
        with api_errors("Pod", pod.name or "", namespace):
            return exec_in_pod(self._core, namespace, pod, container, command, timeout_s)

    def ping(self) -> None:
        """Raise unless the API answers and serves BackupConfigurations (CRDs installed)."""
        self.list_versioned("BackupConfiguration", None)

    # --- Leases: one coordination.k8s.io/v1 Lease per lock -------------------------------

    def acquire_lease(self, lock: str, token: str, holder: Mapping[str, Any], *,
                      exclusive: bool, lease_s: float) -> LeaseAnswer:
        return self._update_lease(lock, lambda table, now_ms: lease_table.acquire(
            table, token, holder, exclusive=exclusive, lease_s=lease_s, now_ms=now_ms))

    def renew_lease(self, lock: str, token: str, lease_s: float) -> bool:
        def renew(table: Holders, now_ms: int) -> tuple[bool, Holders | None]:
            renewed = lease_table.renew(table, token, lease_s, now_ms)
            return renewed is not None, renewed

        return self._update_lease(lock, renew)

    def release_lease(self, lock: str, token: str) -> None:
        self._update_lease(lock, lambda table, _: (None, lease_table.release(table, token)))

    def _update_lease(self, lock: str,
                      decide: Callable[[Holders, int], tuple[T, Holders | None]]) -> T:
        """Read the lock's Lease, ``decide`` on its table of holders and write the table it
        returns (None: nothing to write) at the version read: create the Lease, replace
        it, or delete it once empty. A 409 or 404 means another writer came between:
        read and decide again."""
        name = lease_table.lease_name(lock)
        for attempt in range(CONFLICT_ATTEMPTS):
            current = self._read_lease(name)
            now_ms = int(self._clock() * 1000)
            result, table = decide(lease_table.holders_of(current), now_ms)
            try:
                if table is not None:
                    self._write_lease(lock, current, table, now_ms)
                return result
            except (Conflict, NotFound):
                _pause(attempt, f'Lease "{name}" of {lock} changed while being written')
        raise TransientStorageError(f'Lease "{name}" of {lock} kept changing; gave up after '
                                    f"{CONFLICT_ATTEMPTS} tries")

    def _read_lease(self, name: str) -> RawDict | None:
        try:
            with api_errors("Lease", name, self.lease_namespace):
                return self._lease_answer(self._coordination.read_namespaced_lease(
                    name, self.lease_namespace, _preload_content=False))
        except NotFound:
            return None

    def _write_lease(self, lock: str, current: RawDict | None, table: Holders,
                     now_ms: int) -> None:
        # Sent as a dict, not a V1Lease: the model writes renewTime with isoformat(),
        # which leaves out the microseconds when they are 0, and the server refuses that.
        body: Any = lease_table.lease_body(lock, table, now_ms)
        name, namespace = body["metadata"]["name"], self.lease_namespace
        with api_errors("Lease", name, namespace):
            if current is None:
                self._lease_answer(self._coordination.create_namespaced_lease(
                    namespace, body, _preload_content=False))
                return
            version = current["metadata"]["resourceVersion"]
            if table:
                body["metadata"]["resourceVersion"] = version
                self._lease_answer(self._coordination.replace_namespaced_lease(
                    name, namespace, body, _preload_content=False))
            else:  # no holder left: as Redis drops an empty hash
                self._lease_answer(self._coordination.delete_namespaced_lease(
                    name, namespace, body=client.V1DeleteOptions(
                        preconditions=client.V1Preconditions(resource_version=version)),
                    _preload_content=False))

    def _lease_answer(self, response: Any) -> RawDict:
        """The body of a Lease call, after comparing clocks with the server's ``Date``."""
        date = response.headers.get("Date") if response.headers else None
        if date and not self._skew_reported:
            skew_s = self._clock() - parsedate_to_datetime(date).timestamp()
            if abs(skew_s) > CLOCK_SKEW_WARN_S:
                self._skew_reported = True
                log.warning("this machine's clock is %.0f s %s the Kubernetes API server's: "
                            "lock leases assume the clocks of all workers agree to well "
                            "within a lease", abs(skew_s), "ahead of" if skew_s > 0 else
                            "behind")
        return _json(response)

    # --- raw access: the watcher and the scheduler parse these one by one ------------

    def get_raw(self, kind: str, name: str, namespace: str) -> RawDict:
        r = api_resource(kind)
        with api_errors(kind, name, namespace):
            if r is SECRETS:
                return _secret(_json(self._core.read_namespaced_secret(
                    name, namespace, _preload_content=False)))
            return _dict(self._custom.get_namespaced_custom_object(r.group, r.version,
                                                                   namespace, r.plural, name))

    def list_versioned(self, kind: str, namespace: str | None) -> tuple[RawDicts, str]:
        """Every object of a kind (sorted by namespace, name) and the list's version."""
        r = api_resource(kind)
        with api_errors(kind, namespace=namespace):
            if r is SECRETS:
                answer = _json(self._core.list_namespaced_secret(namespace, _preload_content=False)
                               if namespace else
                               self._core.list_secret_for_all_namespaces(_preload_content=False))
                answer["items"] = [_secret(i) for i in answer.get("items") or []]
            elif namespace:
                answer = _dict(self._custom.list_namespaced_custom_object(
                    r.group, r.version, namespace, r.plural))
            else:
                answer = _dict(self._custom.list_custom_object_for_all_namespaces(
                    r.group, r.version, r.plural))
        items = sorted(answer.get("items") or [], key=_sort_key)
        return items, str((answer.get("metadata") or {}).get("resourceVersion") or "")

    def list_raw(self, cls: type[Resource], namespace: str | None = None) -> RawObjects:
        """Every object of a kind as bytes of spec and status (the scheduler's view)."""
        items, _ = self.list_versioned(cls.KIND, namespace)
        return [raw_object(item) for item in items]

    def generation(self, cls: type[Resource]) -> None:
        """None: the API server keeps no counter of spec changes per kind (a list's
        ``resourceVersion`` moves with every status patch of any object), so the
        scheduler lists every tick. A watch would do better; ``stashq watch`` has one."""
        return None

    def feed(self, cls: type[Resource], namespace: str | None) -> Feed:
        """A list, then a watch in a thread of its own (``workers/state/feeds.py``)."""
        return WatchFeed(self, namespace, cls)

    def lease_holds(self, locks: Sequence[str]) -> None:
        """None: a Lease read per lock is too dear for every sweep; no lock metrics."""
        return None

    def session_watch(self) -> KubeStore:
        """Itself: sessions created with kubectl reach the queue only through the watcher."""
        return self

    def create_many(self, resources: Sequence[Resource]) -> Created:
        """``create`` of each, a request each (the API has no batch create): one that
        fails is logged and None, and the others are still created."""
        made: Created = []
        for resource in resources:
            try:
                made.append(self.create(resource))
            except StashQError as e:
                log.warning("could not create %s %s/%s: %s", resource.kind,
                            resource.namespace, resource.name, e)
                made.append(None)
        return made

    def watch(self, kind: str, namespace: str | None, resource_version: str,
              timeout_s: int) -> Iterator[RawDict]:
        """Events (``{"type", "object"}``) after ``resource_version`` for ``timeout_s``.

        Ends when the server ends the watch; raises ``ResourceVersionExpired`` when the
        version is too old (410), ``TransientStorageError`` when the connection drops.
        """
        r = api_resource(kind)
        options: dict[str, Any] = dict(
            watch=True, resource_version=resource_version, timeout_seconds=timeout_s,
            allow_watch_bookmarks=True, _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, timeout_s + WATCH_READ_GRACE_S))
        with api_errors(kind, namespace=namespace):
            if r is SECRETS:
                raise NotFound("Secrets are read when needed, not watched")
            if namespace:
                response: Any = self._custom.list_namespaced_custom_object(
                    r.group, r.version, namespace, r.plural, **options)
            else:
                response = self._custom.list_custom_object_for_all_namespaces(
                    r.group, r.version, r.plural, **options)
            try:
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    if line.strip():
                        yield _event(json.loads(line), kind, namespace)
            finally:  # a watch left early must not go back to the pool half read
                response.close()
                response.release_conn()

    def patch_status_if(self, kind: str, name: str, namespace: str, resource_version: str,
                        patch: dict[str, Any]) -> bool:
        """Merge ``patch`` into the status only if the object is still at
        ``resource_version``; False if it changed (or was deleted) since."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": patch}
        try:
            self._patch_status(kind, name, namespace, body)
        except (Conflict, NotFound):
            return False
        return True

    # --- the calls --------------------------------------------------------------------

    def _create(self, kind: str, namespace: str, body: RawDict) -> None:
        r = api_resource(kind)
        with api_errors(kind, body["metadata"]["name"], namespace):
            if r is SECRETS:
                self._core.create_namespaced_secret(namespace, _secret_model(body),
                                                    _preload_content=False)
            else:
                self._custom.create_namespaced_custom_object(r.group, r.version, namespace,
                                                             r.plural, body)

    def _replace(self, kind: str, name: str, namespace: str, body: RawDict) -> None:
        r = api_resource(kind)
        with api_errors(kind, name, namespace):
            if r is SECRETS:
                self._core.replace_namespaced_secret(name, namespace,
                                                     _secret_model(body),
                                                     _preload_content=False)
            else:
                self._custom.replace_namespaced_custom_object(r.group, r.version, namespace,
                                                              r.plural, name, body)

    def _patch_status(self, kind: str, name: str, namespace: str, body: RawDict) -> RawDict:
        """Every status write goes here; each is told as the Events of its transition."""
        r = api_resource(kind)
        with api_errors(kind, name, namespace):
            updated = _dict(self._custom.patch_namespaced_custom_object_status(
                r.group, r.version, namespace, r.plural, name, body,
                _content_type="application/merge-patch+json"))
        self._events.record(kind, body.get("status") or {}, updated)
        return updated


def _pause(attempt: int, why: str) -> None:
    log.info("%s; retrying (%d/%d)", why, attempt + 1, CONFLICT_ATTEMPTS)
    time.sleep(CONFLICT_PAUSE_S * (attempt + 1))


def _dict(answer: object) -> RawDict:
    """A JSON object the client returned (typed ``object`` by the client)."""
    if not isinstance(answer, dict):
        raise StorageError(f"the Kubernetes API answered {type(answer).__name__}, not an object")
    return answer


def _json(response: Any) -> RawDict:
    """The body of a response read with ``_preload_content=False``."""
    try:
        return _dict(json.loads(response.data))
    finally:
        response.release_conn()


def _event(event: RawDict, kind: str, namespace: str | None) -> RawDict:
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise status_error(int(status.get("code") or 0), str(status.get("message") or ""),
                           kind, namespace=namespace)
    return event


def _secret(raw: RawDict) -> RawDict:
    """A Secret as the model reads it: what the API adds beyond it is left out."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": raw.get("metadata") or {},
            "type": raw.get("type") or "Opaque", "data": raw.get("data") or {},
            "stringData": raw.get("stringData") or {}}


def _secret_model(body: RawDict) -> client.V1Secret:
    model = client.V1Secret.from_dict(body)
    if model is None:
        raise InvalidResource("not a Secret", kind="Secret")
    return model


def _sort_key(raw: RawDict) -> tuple[str, str]:
    metadata = raw.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _parse(cls: type[R], raw: RawDict) -> R:
    namespace = (raw.get("metadata") or {}).get("namespace") or ""
    return parse_as(cls, raw, source=f"namespace {namespace}")


def _body(resource: Resource) -> RawDict:
    """What a write sends: the user's fields as given, at the API version served."""
    data = resource.model_dump(mode="json", by_alias=True, exclude={"status", "metadata"},
                               exclude_unset=True, exclude_none=True)
    metadata = resource.metadata.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["apiVersion"] = api_resource(resource.kind).api_version
    data["kind"] = resource.kind
    data["metadata"] = {key: metadata[key] for key in WRITTEN_METADATA if metadata.get(key)}
    data["metadata"]["namespace"] = resource.namespace
    return data
