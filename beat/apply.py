"""``stashq apply``: all or nothing. Every document is parsed and every reference
checked before the first one is stored; sessions are created and queued last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from workers.context import SessionRef
from workers.state.base import ResourceStore
from workflows.catalog import builtin_tasks
from workflows.errors import InvalidResource, NotFound
from workflows.manifests import load_manifests
from workflows.parsing import parse_resource
from workflows.phases import pending
from workflows.resources import (
    AppBinding,
    BackupConfiguration,
    BackupSession,
    Repository,
    Resource,
    RestoreSession,
    Secret,
    Task,
)

SESSION_KINDS = (BackupSession, RestoreSession)


def parse_paths(paths: Iterable[Path], namespace: str) -> list[tuple[str, Resource]]:
    out = []
    for path in paths:
        for source, raw in load_manifests(path):
            metadata = raw.get("metadata")
            if isinstance(metadata, dict) and not metadata.get("namespace"):
                raw = {**raw, "metadata": {**metadata, "namespace": namespace}}
            out.append((source, parse_resource(raw, source=source)))
    return out


class References:
    """Answers "does kind/name exist?" from the batch being applied, then the store."""

    def __init__(self, store: ResourceStore, batch: list[tuple[str, Resource]]) -> None:
        self._store = store
        self._batch = {(r.kind, r.namespace, r.name) for _, r in batch}

    def require(self, cls: type[Resource], name: str, namespace: str, *, source: str,
                owner: Resource, path: str) -> None:
        if (cls.KIND, namespace, name) in self._batch:
            return
        if cls is Task and name in builtin_tasks():
            return
        try:
            self._store.get(cls, name, namespace)
        except NotFound:
            raise InvalidResource(f'{cls.KIND} "{name}" does not exist in namespace '
                                  f'"{namespace}"', source=source, kind=owner.kind,
                                  name=owner.name, path=path) from None


def check_references(refs: References, source: str, r: Resource) -> None:
    ns = r.namespace
    if isinstance(r, Repository) and r.spec.backend.storage_secret_name:
        refs.require(Secret, r.spec.backend.storage_secret_name, ns, source=source, owner=r,
                     path="spec.backend.storageSecretName")
    elif isinstance(r, AppBinding):
        refs.require(Secret, r.spec.secret.name, ns, source=source, owner=r,
                     path="spec.secret.name")
    elif isinstance(r, BackupConfiguration | RestoreSession):
        spec = r.spec
        refs.require(Repository, spec.repository.name, spec.repository.namespace or ns,
                     source=source, owner=r, path="spec.repository.name")
        refs.require(AppBinding, spec.target.ref.name, spec.target.ref.namespace or ns,
                     source=source, owner=r, path="spec.target.ref.name")
        if spec.task.name:
            refs.require(Task, spec.task.name, ns, source=source, owner=r, path="spec.task.name")
    elif isinstance(r, BackupSession):
        refs.require(BackupConfiguration, r.spec.invoker.name, ns, source=source, owner=r,
                     path="spec.invoker.name")


def change_of(store: ResourceStore, resource: Resource) -> str:
    """What applying ``resource`` does, in kubectl's words: created, configured (changed)
    or unchanged."""
    try:
        current = store.get(type(resource), resource.name, resource.namespace)
    except NotFound:
        return "created"
    except ValueError:  # what is stored does not parse (any more): replacing it changes it
        return "configured"
    return "unchanged" if current.definition() == resource.definition() else "configured"


def apply_paths(store: ResourceStore, paths: Iterable[Path], namespace: str,
                dispatch: Callable[[SessionRef], object]) -> Iterator[str]:
    """Yield one line per resource applied (``kind/name configured|created|unchanged``)."""
    batch = parse_paths(paths, namespace)
    refs = References(store, batch)
    for source, resource in batch:
        check_references(refs, source, resource)
    for _, resource in batch:
        if not isinstance(resource, SESSION_KINDS):
            verb = change_of(store, resource)
            if verb != "unchanged":
                store.apply(resource)
            yield f"{resource.kind}/{resource.name} {verb}"
    for _, resource in batch:
        if isinstance(resource, SESSION_KINDS):
            if store.create(resource.model_copy(update={"status": pending()})):
                dispatch(SessionRef(resource.kind, resource.namespace, resource.name))
                yield f"{resource.kind}/{resource.name} created"
            else:
                yield f"{resource.kind}/{resource.name} unchanged (sessions are immutable)"
