"""``stashq apply``: all or nothing. Every document is parsed and every reference
checked before the first one is stored (every invalid one is named, not only the
first); sessions are created and queued last.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from workers.context import SessionRef
from workers.state.base import ResourceStore
from workflows.catalog import builtin_functions, builtin_tasks
from workflows.drills import scratch_conflict
from workflows.errors import InvalidResource, NotFound, StashQError
from workflows.manifests import load_manifests
from workflows.params import DumpParams, PhysicalBackupParams
from workflows.parsing import parse_resource
from workflows.phases import pending
from workflows.plan import plan_for
from workflows.resources import (
    AppBinding,
    BackupConfiguration,
    BackupSession,
    Function,
    HookTemplate,
    Repository,
    Resource,
    RestoreDrill,
    RestoreSession,
    Secret,
    Task,
)

SESSION_KINDS = (BackupSession, RestoreSession)
R = TypeVar("R", bound=Resource)


#: What the API server appends to ``metadata.generateName``: 5 of these characters
#: (apimachinery's ``utilrand.String``: no vowels, no look-alikes).
GENERATED_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_NAME_CHARS = 5


@dataclass
class Batch:
    """What ``stashq apply`` read: the resources that parsed, the problems of those that
    did not, and every document's (kind, namespace, name), parsed or not (so that a
    reference to a broken document is not reported as a second, misleading problem)."""

    resources: list[tuple[str, Resource]] = field(default_factory=list)
    problems: list[InvalidResource] = field(default_factory=list)
    declared: set[tuple[object, object, object]] = field(default_factory=set)


def parse_paths(paths: Iterable[Path], namespace: str) -> Batch:
    batch = Batch()
    for path in paths:
        for source, raw in load_manifests(path):
            metadata = raw.get("metadata")
            if isinstance(metadata, dict):
                raw = {**raw, "metadata": completed_metadata(metadata, namespace)}
                batch.declared.add((raw.get("kind"), raw["metadata"].get("namespace"),
                                    raw["metadata"].get("name")))
            try:
                batch.resources.append((source, parse_resource(raw, source=source)))
            except InvalidResource as e:
                batch.problems.append(e)
    return batch


def all_problems(problems: list[InvalidResource]) -> InvalidResource:
    """One error naming every invalid resource, one per line."""
    if len(problems) == 1:
        return problems[0]
    lines = "".join(f"\n  {p}" for p in problems)
    return InvalidResource(f"{len(problems)} resources are invalid; nothing was applied:{lines}")


def completed_metadata(metadata: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``metadata`` with the namespace (if it names none) and, for ``generateName``
    without a name, a name made as the API server makes one: each apply of such a file
    (an instant-backup manifest) creates a new session, as ``kubectl create`` does."""
    out = dict(metadata)
    if not out.get("namespace"):
        out["namespace"] = namespace
    prefix = out.get("generateName")
    if isinstance(prefix, str) and prefix and not out.get("name"):
        suffix = "".join(secrets.choice(GENERATED_NAME_ALPHABET)
                         for _ in range(GENERATED_NAME_CHARS))
        out["name"] = prefix + suffix
    return out


class References:
    """Answers "does kind/name exist?" from the batch being applied, then the store."""

    def __init__(self, store: ResourceStore, batch: Batch) -> None:
        self._store = store
        self._batch = batch.declared
        self._parsed = {(r.kind, r.namespace, r.name): r for _, r in batch.resources}

    def find(self, cls: type[R], name: str, namespace: str) -> R | None:
        """The resource from the batch (it wins), else from the store; None if neither."""
        found = self._parsed.get((cls.KIND, namespace, name))
        if found is not None:
            return found  # type: ignore[return-value]
        try:
            return self._store.get(cls, name, namespace)
        except NotFound:
            return None

    def known(self, cls: type[R], builtin: Mapping[str, R], namespace: str) -> dict[str, R]:
        """Built-ins, then the store's, then the batch's, each over the one before."""
        batch = {r.name: r for (kind, ns, _), r in self._parsed.items()
                 if kind == cls.KIND and ns == namespace}
        stored = {r.name: r for r in self._store.list(cls, namespace)}
        return {**builtin, **stored, **batch}  # type: ignore[dict-item]

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
        check_hook_templates(refs, source, r)
        check_plan(refs, source, r)
    elif isinstance(r, RestoreDrill):
        check_drill(refs, source, r)
    elif isinstance(r, BackupSession):
        refs.require(BackupConfiguration, r.spec.invoker.name, ns, source=source, owner=r,
                     path="spec.invoker.name")


def check_hook_templates(refs: References, source: str,
                         r: BackupConfiguration | RestoreSession) -> None:
    """Every ``hookTemplate`` a hook names exists (in the batch or the store)."""
    hooks = r.spec.hooks
    for phase in hooks.phases():
        for index, hook in enumerate(hooks.of(phase)):
            if hook.hook_template is not None:
                refs.require(HookTemplate, hook.hook_template.name, r.namespace, source=source,
                             owner=r, path=f"spec.hooks.{phase}[{index}].hookTemplate.name")


def check_drill(refs: References, source: str, drill: RestoreDrill) -> None:
    """The drill's references exist, and its scratch target is none of its
    configurations' source databases (``scratch_conflict``)."""
    spec, ns = drill.spec, drill.namespace
    refs.require(Repository, spec.repository.name, spec.repository.namespace or ns,
                 source=source, owner=drill, path="spec.repository.name")
    scratch = refs.find(AppBinding, spec.scratch.ref.name, spec.scratch.ref.namespace or ns)
    if scratch is None:
        refs.require(AppBinding, spec.scratch.ref.name, spec.scratch.ref.namespace or ns,
                     source=source, owner=drill, path="spec.scratch.ref.name")
        return
    for index, name in enumerate(spec.configurations):
        path = f"spec.configurations[{index}]"
        config = refs.find(BackupConfiguration, name, ns)
        if config is None:
            refs.require(BackupConfiguration, name, ns, source=source, owner=drill, path=path)
            continue
        target = config.spec.target.ref
        binding = refs.find(AppBinding, target.name, target.namespace or ns)
        if binding is None:
            continue  # the configuration's own check reports it
        databases = backed_up_databases(refs, config, binding)
        if databases is None:
            continue
        reason = scratch_conflict(scratch, spec.scratch.database_prefix, binding, databases)
        if reason is not None:
            raise InvalidResource(f'refused: BackupConfiguration "{name}": {reason}',
                                  source=source, kind=drill.kind, name=drill.name,
                                  path="spec.scratch")


def backed_up_databases(refs: References, config: BackupConfiguration,
                        binding: AppBinding) -> tuple[str, ...] | None:
    """The databases the configuration's dump step names (empty: all of them; None: a
    physical backup, drilled on a throw-away server, never in the scratch target)."""
    try:
        plan = plan_for(config.spec.task, kind="backup", engine=binding.engine,
                        tasks=refs.known(Task, builtin_tasks(), config.namespace),
                        functions=refs.known(Function, builtin_functions(), config.namespace))
    except (InvalidResource, NotFound):
        return ()  # reported by the configuration's own check; judged as "every database"
    if any(step.step == PhysicalBackupParams.STEP for step in plan.steps):
        return None
    params = plan.typed_params("stashq.dump_upload")
    return params.databases if isinstance(params, DumpParams) else ()


def check_plan(refs: References, source: str,
               r: BackupConfiguration | RestoreSession) -> None:
    """Resolve the Task as a worker will: a bad param value is refused now, with its name,
    not when a backup runs."""
    spec = r.spec
    binding = refs.find(AppBinding, spec.target.ref.name, spec.target.ref.namespace or r.namespace)
    if binding is None:
        return  # reported by the reference check
    try:
        plan_for(spec.task, kind="backup" if isinstance(r, BackupConfiguration) else "restore",
                 engine=binding.engine,
                 tasks=refs.known(Task, builtin_tasks(), r.namespace),
                 functions=refs.known(Function, builtin_functions(), r.namespace),
                 replicas=spec.target.replicas)
    except (InvalidResource, NotFound) as e:
        detail, path = (e.detail, e.path) if isinstance(e, InvalidResource) else (e.reason, "")
        raise InvalidResource(detail, source=source, kind=r.kind, name=r.name,
                              path=path or "spec.task") from None


def change_of(store: ResourceStore, resource: Resource) -> str:
    """What applying ``resource`` does, in kubectl's words: created, configured (changed)
    or unchanged."""
    try:
        current = store.get(type(resource), resource.name, resource.namespace)
    except NotFound:
        return "created"
    except (StashQError, ValueError):  # stored but unreadable (invalid): replaced
        return "configured"
    return "unchanged" if current.definition() == resource.definition() else "configured"


def apply_paths(store: ResourceStore, paths: Iterable[Path], namespace: str,
                dispatch: Callable[[SessionRef], object]) -> Iterator[str]:
    """Yield one line per resource applied (``kind/name configured|created|unchanged``)."""
    batch = parse_paths(paths, namespace)
    refs = References(store, batch)
    for source, resource in batch.resources:
        try:
            check_references(refs, source, resource)
        except InvalidResource as e:
            batch.problems.append(e)
    if batch.problems:
        raise all_problems(batch.problems)
    for _, resource in batch.resources:
        if not isinstance(resource, SESSION_KINDS):
            verb = change_of(store, resource)
            if verb != "unchanged":
                store.apply(resource)
            yield f"{resource.kind}/{resource.name} {verb}"
    for _, resource in batch.resources:
        if isinstance(resource, SESSION_KINDS):
            if store.create(resource.model_copy(update={"status": pending()})):
                dispatch(SessionRef(resource.kind, resource.namespace, resource.name))
                yield f"{resource.kind}/{resource.name} created"
            else:
                yield f"{resource.kind}/{resource.name} unchanged (sessions are immutable)"
