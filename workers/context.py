"""Session reference → the models and adapters a step needs.

Messages carry only a reference (``BackupSession/<namespace>/<name>``); every step
rebuilds its context from the store, so a redelivered message sees current state and
no model or secret ever travels through the broker. Each lookup failure names the
resource and the field that pointed at it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from workers.engines import ConnectionInfo, EngineAdapter, engine_for
from workers.repository import Repository as RepositoryObject
from workers.repository import open_repository
from workers.state.base import ResourceStore
from workflows.catalog import builtin_functions, builtin_tasks
from workflows.errors import InvalidResource, NotFound
from workflows.hooks import ResolvedHook, resolve_hooks, with_hooks
from workflows.plan import Plan, plan_for
from workflows.recovery import Recovery, point_of
from workflows.resources import (
    AppBinding,
    BackupConfiguration,
    BackupSession,
    Function,
    HookTemplate,
    Repository,
    RestoreSession,
    Secret,
    Task,
)
from workflows.resources.base import Resource
from workflows.resources.hooks import HookPhases
from workflows.settings import Settings
from workflows.snapshots import Snapshot

R = TypeVar("R", bound=Resource)

SESSION_KINDS: dict[str, type[BackupSession] | type[RestoreSession]] = {
    "BackupSession": BackupSession, "RestoreSession": RestoreSession,
}


@dataclass(frozen=True)
class SessionRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> SessionRef:
        kind, namespace, name = text.split("/", 2)
        if kind not in SESSION_KINDS:
            raise InvalidResource(f'"{kind}" is not a session kind', source=text)
        return cls(kind, namespace, name)

    @property
    def cls(self) -> type[BackupSession] | type[RestoreSession]:
        return SESSION_KINDS[self.kind]


class StepContext:
    """Lazily resolved view of one session; cached per step execution."""

    def __init__(self, settings: Settings, store: ResourceStore, ref: SessionRef) -> None:
        self.settings, self.store, self.ref = settings, store, ref

    @functools.cached_property
    def session(self) -> BackupSession | RestoreSession:
        return self.store.get(self.ref.cls, self.ref.name, self.ref.namespace)

    @property
    def is_backup(self) -> bool:
        return self.ref.kind == "BackupSession"

    @functools.cached_property
    def config(self) -> BackupConfiguration | None:
        session = self.session
        if not isinstance(session, BackupSession):
            return None
        return self._get(BackupConfiguration, session.spec.invoker.name, "spec.invoker.name")

    @property
    def invoker(self) -> str | None:
        """The BackupConfiguration a BackupSession runs (None for a restore)."""
        session = self.session
        return session.spec.invoker.name if isinstance(session, BackupSession) else None

    @functools.cached_property
    def repository(self) -> Repository:
        spec = self.config.spec if self.config is not None else self.session.spec
        return self._get(Repository, spec.repository.name, "spec.repository.name",  # type: ignore[union-attr]
                         spec.repository.namespace)  # type: ignore[union-attr]

    @functools.cached_property
    def appbinding(self) -> AppBinding:
        spec = self.config.spec if self.config is not None else self.session.spec
        ref = spec.target.ref  # type: ignore[union-attr]
        if ref.kind != "AppBinding":
            raise InvalidResource(f'target kind "{ref.kind}" is not supported (AppBinding only)',
                                  path="spec.target.ref.kind")
        return self._get(AppBinding, ref.name, "spec.target.ref.name", ref.namespace)

    @functools.cached_property
    def storage_secret(self) -> Secret | None:
        name = self.repository.spec.backend.storage_secret_name
        if not name:
            return None
        return self._secret(name, self.repository, "spec.backend.storageSecretName")

    @functools.cached_property
    def repo(self) -> RepositoryObject:
        """The Repository object: every read and write of the repository goes through it."""
        return open_repository(self.repository, self.storage_secret, self.settings)

    @functools.cached_property
    def restore_snapshot(self) -> Snapshot:
        """The snapshot a RestoreSession restores: the one its pre-check chose
        (``status.snapshot.name``: a backup finishing meanwhile changes nothing, and each
        replica of a physical restore gets the same), else ``latest`` or the id its spec
        names, of the source it names."""
        session = self.session
        assert isinstance(session, RestoreSession), "a backup restores no snapshot"
        repository = self.repository.name
        chosen = pinned_snapshot(session)
        if chosen is None and self.recovery is not None:
            chosen = self.recovery.snapshot  # the newest snapshot before the point
        if chosen is None:
            return self.repo.resolve_snapshot(session.snapshot, session.source)
        snapshot = self.repo.find_snapshot(chosen)
        if snapshot is None:
            raise NotFound(f'snapshot "{chosen}" (chosen by pre-check) is no longer in '
                           f'Repository "{repository}"')
        return snapshot

    @functools.cached_property
    def recovery(self) -> Recovery | None:
        """A restore to a point: its snapshot and the archived binlog segments to replay
        (None: a plain restore). ``PrecheckFailed`` names the window if the point is out."""
        session = self.session
        if not isinstance(session, RestoreSession) or session.spec.point_in_time is None:
            return None
        # once pre-check chose the snapshot, the replay starts from that one, even if a
        # newer one finished meanwhile
        return self.repo.plan_recovery(point_of(session.spec.point_in_time), session.source,
                                       pinned_snapshot(session))

    @functools.cached_property
    def engine(self) -> EngineAdapter:
        return engine_for(self.appbinding.engine)

    @functools.cached_property
    def connection(self) -> ConnectionInfo:
        return connection_of(self.store, self.appbinding)

    @functools.cached_property
    def plan(self) -> Plan:
        """The Task's steps with the hook steps the session's hooks need."""
        spec = self.config.spec if self.config is not None else self.session.spec
        kind: Literal["backup", "restore"] = "backup" if self.is_backup else "restore"
        plan = plan_for(spec.task, kind=kind,  # type: ignore[union-attr]
                        engine=self.appbinding.engine,
                        tasks=known(self.store, Task, builtin_tasks(), self.ref.namespace),
                        functions=known(self.store, Function, builtin_functions(),
                                        self.ref.namespace),
                        replicas=spec.target.replicas)  # type: ignore[union-attr]
        return with_hooks(plan, self.hooks, kind)

    @property
    def hooks(self) -> HookPhases:
        """The hooks of the configuration (backup) or the RestoreSession."""
        spec = self.config.spec if self.config is not None else self.session.spec
        return spec.hooks  # type: ignore[union-attr]

    def resolved_hooks(self, phase: str) -> list[ResolvedHook]:
        """The hooks of ``phase``, their HookTemplates (of the session's namespace) applied."""
        templates = known(self.store, HookTemplate, {}, self.ref.namespace)
        return resolve_hooks(self.hooks, phase, templates)

    def _get(self, cls: type[R], name: str, field: str, namespace: str | None = None) -> R:
        namespace = namespace or self.ref.namespace
        try:
            return self.store.get(cls, name, namespace)
        except NotFound:
            raise NotFound(f'{cls.KIND} "{name}" (named by {self.ref.kind} "{self.ref.name}" '
                           f'{field}) not found in namespace "{namespace}"') from None

    def _secret(self, name: str, owner: Resource, field: str) -> Secret:
        return secret_of(self.store, name, owner, field)


def secret_of(store: ResourceStore, name: str, owner: Resource, field: str) -> Secret:
    """Secret ``name`` of ``owner``'s namespace; ``NotFound`` names who named it."""
    try:
        return store.get(Secret, name, owner.namespace)
    except NotFound:
        raise NotFound(f'Secret "{name}" (named by {owner.kind} "{owner.name}" {field}) '
                       f'not found in namespace "{owner.namespace}"') from None


def connection_of(store: ResourceStore, binding: AppBinding) -> ConnectionInfo:
    """How to reach the AppBinding's server, with the credentials of its Secret."""
    secret = secret_of(store, binding.spec.secret.name, binding, "spec.secret.name")
    host, port = binding.address()
    return ConnectionInfo(host=host, port=port, user=secret.require("username"),
                          password=secret.require("password"),
                          ca_bundle=binding.spec.client_config.ca_bundle)


def pinned_snapshot(session: RestoreSession) -> str | None:
    """The snapshot id a restore's pre-check chose, once it passed."""
    chosen = (session.status.get("snapshot") or {}).get("name")
    return str(chosen) if chosen else None


def known(store: ResourceStore, cls: type[R], builtin: Mapping[str, R],
          namespace: str) -> dict[str, R]:
    """The built-in Tasks (or Functions) with the namespace's own over them."""
    return {**builtin, **{r.name: r for r in store.list(cls, namespace)}}
