"""RestoreSession: put a snapshot (``latest`` or an id) back into a target."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from workflows.resources.base import LocalRef, Model, Resource, TargetRef, TaskRef
from workflows.resources.hooks import HOOKS_SCHEMA, RestoreHooks

LATEST = "latest"


class RestoreRule(Model):
    #: The source whose snapshots ``latest`` chooses among: the BackupConfiguration (or
    #: AppBinding) that took them (Stash: the host whose backup is restored).
    source_host: str | None = None
    target_hosts: tuple[str, ...] = ()
    snapshots: tuple[str, ...] = (LATEST,)
    paths: tuple[str, ...] = ()


class RestoreTarget(Model):
    ref: TargetRef
    replicas: int | None = Field(default=None, ge=1)
    rules: tuple[RestoreRule, ...] = (RestoreRule(),)
    volume_claim_templates: tuple[dict[str, Any], ...] = ()
    args: tuple[str, ...] = ()
    #: Replace the tables of databases that exist: without it, pre-check refuses a
    #: restore into a database that holds any.
    overwrite: bool = False


class RestoreSessionSpec(Model):
    repository: LocalRef
    target: RestoreTarget
    task: TaskRef = TaskRef()
    hooks: Annotated[RestoreHooks, HOOKS_SCHEMA] = RestoreHooks()
    time_out: str | None = None
    runtime_settings: dict[str, Any] = Field(default_factory=dict)


class RestoreSession(Resource):
    KIND: ClassVar[str] = "RestoreSession"
    kind: Literal["RestoreSession"]
    spec: RestoreSessionSpec

    @property
    def snapshot(self) -> str:
        """The one snapshot this session restores (``latest`` or an id)."""
        return self.spec.target.rules[0].snapshots[0]

    @property
    def source(self) -> str | None:
        """The source of that snapshot (``sourceHost``), if the session names one."""
        return self.spec.target.rules[0].source_host
