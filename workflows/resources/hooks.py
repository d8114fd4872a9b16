"""Hooks (``spec.hooks`` of a BackupConfiguration or RestoreSession) and HookTemplate.

Stash writes one handler per phase, in Kubernetes' probe shape::

    hooks:
      preBackup:  {exec: {command: [...]}, containerName: mysql}
      postBackup: {httpPost: {host: ..., port: 80, path: /done}, executionPolicy: Always}

StashQ reads that shape unchanged and also a list per phase (several hooks, run in
order), each with an optional ``name``, KubeStash's ``timeout`` and ``maxRetry``, and
``hookTemplate: {name}`` naming a reusable HookTemplate instead of an action. Actions:
``exec``, ``httpGet``, ``httpPost`` (Stash's) and ``sql`` (statements run on the target
with its AppBinding's credentials). ``executionPolicy`` is for post hooks only (a pre
hook always runs); ``failurePolicy`` says whether a failing post hook fails the session.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from workflows.resources.base import LocalRef, Model, Name, Resource

#: Seconds a hook may run when it names no timeout: a hook freezes writes or tells
#: another system; one that needs longer says so (it delays every backup).
DEFAULT_HOOK_TIMEOUT_S = 60.0
#: Longest timeout a hook may ask for, in seconds: a hook is not a backup.
MAX_HOOK_TIMEOUT_S = 3600.0
#: Retries of a failing hook at most (each after ``HOOK_RETRY_DELAY_S``).
MAX_HOOK_RETRIES = 10
#: Go-style durations as Stash and KubeStash write them: "30s", "2m", "1h30m", "1.5s".
DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class ExecutionPolicy(StrEnum):
    """When a post hook runs, by how the session ended (Stash's and KubeStash's words)."""

    ALWAYS = "Always"
    ON_SUCCESS = "OnSuccess"
    ON_FAILURE = "OnFailure"
    #: Stash: on failure once no retry is left. StashQ retries steps inside a session,
    #: so a Failed session has none left: the same as OnFailure.
    ON_FINAL_RETRY_FAILURE = "OnFinalRetryFailure"


class FailurePolicy(StrEnum):
    """What a failing post hook does to its session (a failing pre hook always fails it)."""

    FAIL = "Fail"      #: the session ends Failed, naming the hook
    IGNORE = "Ignore"  #: recorded in ``status.hooks``; the phase stands


def duration_seconds(text: str) -> float:
    """``"1m30s"`` → 90.0; ``ValueError`` for anything else (or zero)."""
    match = DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f'"{text}" is not a duration (write e.g. "30s", "2m" or "1h30m")')
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f'"{text}" is not a positive duration')
    return total


class ExecAction(Model):
    """A command: on the worker's host, or in a pod through the Kubernetes API."""

    command: tuple[str, ...] = Field(min_length=1)


class HTTPHeader(Model):
    name: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=8192)


class HTTPAction(Model):
    """Stash's ``httpGet``/``httpPost`` (``host``, ``port``, ``path``, ``scheme``,
    ``httpHeaders``), or the whole ``url`` at once; ``expectedStatus`` (None: any 2xx)."""

    url: str | None = Field(default=None, pattern=r"^https?://")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = "/"
    scheme: Literal["HTTP", "HTTPS", "http", "https"] = "HTTP"
    http_headers: tuple[HTTPHeader, ...] = ()
    #: A POST's body (Stash's: text). A JSON object gets the session's name and phase
    #: added; any other text is sent as it is (the headers name the session).
    body: str | None = Field(default=None, max_length=65536)
    expected_status: int | None = Field(default=None, ge=100, le=599)

    @model_validator(mode="after")
    def _where(self) -> HTTPAction:
        if (self.url is None) == (self.host is None):
            raise ValueError("name either url or host (with port, path, scheme)")
        return self

    def address(self) -> str:
        """The URL the request goes to."""
        if self.url is not None:
            return self.url
        port = f":{self.port}" if self.port is not None else ""
        path = self.path if self.path.startswith("/") else f"/{self.path}"
        return f"{self.scheme.lower()}://{self.host}{port}{path}"


class SQLAction(Model):
    """Statements run in order on the target, as its AppBinding's user, in one session."""

    statements: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    database: str | None = None  #: default database of the session (None: none)


class PodSelector(Model):
    """Which pod an ``exec`` runs in on Kubernetes: by name, or the first ready pod
    whose labels match."""

    name: Name | None = None
    namespace: Name | None = None
    match_labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one(self) -> PodSelector:
        if (self.name is None) == (not self.match_labels):
            raise ValueError("name a pod either by name or by matchLabels")
        return self


class HookAction(Model):
    """What a hook does: exactly one of ``exec``, ``httpGet``, ``httpPost``, ``sql``."""

    exec: ExecAction | None = None
    http_get: HTTPAction | None = None
    http_post: HTTPAction | None = None
    sql: SQLAction | None = None
    #: Stash's: the container an ``exec`` runs in (Kubernetes).
    container_name: str | None = None
    #: StashQ's: the pod an ``exec`` runs in (Kubernetes); without it, on the worker.
    pod: PodSelector | None = None

    ACTIONS: ClassVar[tuple[str, ...]] = ("exec", "http_get", "http_post", "sql")

    @property
    def kind(self) -> str:
        """``exec``, ``httpGet``, ``httpPost`` or ``sql``; "" if none is set."""
        names = {"exec": "exec", "http_get": "httpGet", "http_post": "httpPost", "sql": "sql"}
        return next((names[a] for a in self.ACTIONS if getattr(self, a) is not None), "")

    def _count_actions(self) -> int:
        return sum(getattr(self, a) is not None for a in self.ACTIONS)


def _timeout(value: Any) -> Any:
    """A duration string or a number of seconds → seconds."""
    return duration_seconds(value) if isinstance(value, str) else value


#: A duration ("30s", "2m") or seconds; in a CRD schema an int-or-string.
Timeout = Annotated[float, BeforeValidator(_timeout), Field(gt=0, le=MAX_HOOK_TIMEOUT_S),
                    WithJsonSchema({"x-kubernetes-int-or-string": True})]


class HookTemplateSpec(HookAction):
    """A hook defined once: its action, and the timeout and retries it runs with unless
    the hook naming it says otherwise."""

    timeout: Timeout = DEFAULT_HOOK_TIMEOUT_S
    max_retry: int = Field(default=0, ge=0, le=MAX_HOOK_RETRIES)

    @model_validator(mode="after")
    def _one_action(self) -> HookTemplateSpec:
        if self._count_actions() != 1:
            raise ValueError("give exactly one action: exec, httpGet, httpPost or sql")
        return self


class HookTemplate(Resource):
    """KubeStash's HookTemplate: a hook named by ``hookTemplate`` from many hooks."""

    KIND: ClassVar[str] = "HookTemplate"
    kind: Literal["HookTemplate"]
    spec: HookTemplateSpec


class Hook(HookAction):
    """One hook: an action, or ``hookTemplate`` naming one; how long and how often."""

    name: Name | None = None
    hook_template: LocalRef | None = None
    timeout: Timeout | None = None            #: None: the template's, else 60 s
    max_retry: int | None = Field(default=None, ge=0, le=MAX_HOOK_RETRIES)
    execution_policy: ExecutionPolicy | None = None   #: post hooks; None: Always
    failure_policy: FailurePolicy | None = None       #: post hooks; None: Fail

    @model_validator(mode="after")
    def _one_action(self) -> Hook:
        count = self._count_actions() + (self.hook_template is not None)
        if count != 1:
            raise ValueError("give exactly one of exec, httpGet, httpPost, sql or "
                             "hookTemplate")
        if self.hook_template is not None and (self.container_name or self.pod):
            raise ValueError("containerName and pod belong to the HookTemplate's exec")
        return self


def _listed(value: Any) -> Any:
    """Stash's one handler per phase, or a list of hooks."""
    return [value] if isinstance(value, dict) else value


HookList = Annotated[tuple[Hook, ...], BeforeValidator(_listed), Field(max_length=32)]
#: How ``spec.hooks`` appears in a CRD schema: an object left to the parser, since a
#: phase is one hook (Stash) or a list, which a structural schema cannot say; the parser
#: checks it and the watcher and scheduler report what it finds.
HOOKS_SCHEMA = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})


class HookPhases(Model):
    """Hooks by phase; each phase is a list (Stash's single handler becomes one)."""

    @model_validator(mode="after")
    def _names(self) -> HookPhases:
        for phase in type(self).model_fields:
            hooks: tuple[Hook, ...] = getattr(self, phase)
            names = [h.name for h in hooks if h.name]
            if len(names) != len(set(names)):
                raise ValueError(f"two hooks of {phase_name(phase)} have the same name")
            if phase.startswith("pre") and any(h.execution_policy or h.failure_policy
                                               for h in hooks):
                raise ValueError(f"{phase_name(phase)}: executionPolicy and failurePolicy "
                                 "are for post hooks (a pre hook always runs, and a failing "
                                 "one fails the session)")
        return self

    def phases(self) -> list[str]:
        """The phases, as the manifest spells them (``preBackup``, ``postBackup``)."""
        return [phase_name(f) for f in type(self).model_fields]

    def of(self, phase: str) -> tuple[Hook, ...]:
        """The hooks of ``phase`` (``preBackup``, ``postRestore``, …)."""
        return tuple(getattr(self, _field(phase), ()))


class BackupHooks(HookPhases):
    pre_backup: HookList = ()
    post_backup: HookList = ()


class RestoreHooks(HookPhases):
    pre_restore: HookList = ()
    post_restore: HookList = ()


def phase_name(field: str) -> str:
    """``pre_backup`` → ``preBackup``."""
    head, _, tail = field.partition("_")
    return head + tail.capitalize()


def _field(phase: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), phase)

