"""Typed params of the built-in steps: parsed once, where a Task is resolved into a plan.

Params travel as strings, as in Stash (Function defaults, then the Task step's, then the
configuration's ``spec.task.params``). Each built-in step declares here what it takes
and in what range; ``parse_params`` turns the merged strings into that model, so a bad
``zstdLevel`` or ``parallel`` is an ``InvalidResource`` naming the param at ``apply``
(and at every resolution after it), not a failure halfway through a backup. An empty
string means "the default", as the built-in Functions write it. Steps of user-defined
Functions that no model describes get their strings as they are (``RawParams``).

Pure: strings in, frozen models out.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workflows.errors import InvalidResource
from workflows.parallel_plan import MAX_PARALLEL

#: More parallel restore copies than this is a typo, not a cluster.
MAX_REPLICAS = 64
#: Placeholders a physical restore's ``dataDir`` may hold.
DATA_DIR_FIELDS = frozenset({"replica", "target", "session", "namespace"})


def _blank_is_default(value: Any) -> Any:
    """``""`` (or blanks) means "not set": the field's default applies."""
    return None if isinstance(value, str) and not value.strip() else value


def _words(value: Any) -> Any:
    """Extra client arguments: whitespace-separated words."""
    return tuple(value.split()) if isinstance(value, str) else value


def _names(value: Any) -> Any:
    """A comma-separated list of names."""
    return tuple(n.strip() for n in value.split(",") if n.strip()) \
        if isinstance(value, str) else value


Blank = BeforeValidator(_blank_is_default)
Args = Annotated[tuple[str, ...], BeforeValidator(_words)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Parallel = Annotated[Annotated[int, Field(ge=1, le=MAX_PARALLEL)] | None, Blank]
ZstdLevel = Annotated[Annotated[int, Field(ge=1, le=22)] | None, Blank]
Seconds = Annotated[Annotated[float, Field(gt=0)] | None, Blank]
Text = Annotated[str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)]


class StepParams(BaseModel):
    """What a step takes; unknown names are refused (a typo would be ignored otherwise)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True)
    STEP: ClassVar[str] = ""


class NoParams(StepParams):
    """A built-in step that takes no params (pre-check, update-status, push-metrics)."""


class RawParams(StepParams):
    """A step no model describes: its strings, unchecked."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def get(self, name: str, default: str = "") -> str:
        return str((self.model_extra or {}).get(name, default))


class DumpParams(StepParams):
    STEP: ClassVar[str] = "stashq.dump_upload"
    databases: Names = ()                 #: empty: every user database
    args: Args = ()                       #: extra dump client arguments
    zstd_level: ZstdLevel = None          #: None: STASHQ_ZSTD_LEVEL
    parallel: Parallel = None             #: dump clients sharing one snapshot (None: 1)


class RestoreParams(StepParams):
    STEP: ClassVar[str] = "stashq.restore_stream"
    args: Args = ()                       #: extra SQL client arguments
    database: Annotated[str | None, Blank] = None  #: a one-database snapshot's new name
    parallel: Parallel = None             #: data streams loaded at once (None: all)


class RetentionParams(StepParams):
    STEP: ClassVar[str] = "stashq.retention"
    lock_wait_seconds: Seconds = None     #: wait for running backups, then defer


class PhysicalPrecheckParams(NoParams):
    STEP: ClassVar[str] = "stashq.physical_precheck"


class PhysicalBackupParams(StepParams):
    STEP: ClassVar[str] = "stashq.physical_backup"
    method: Literal["galera-sst", "mariabackup"]
    args: Args = ()                       #: extra mariadb-backup arguments
    zstd_level: ZstdLevel = None
    donor: Text = ""                      #: node to copy from; empty: the cluster chooses
    sst_address: Text = ""                #: address donors connect to
    sst_port: Annotated[int, BeforeValidator(lambda v: _blank_is_default(v) or 0),
                        Field(ge=0, le=65535)] = 0  #: 0: any free port
    sst_peers: Literal["", "*"] = ""      #: "*": SST connections from any host
    join_timeout_seconds: Seconds = None
    connect_timeout_seconds: Seconds = None


class PhysicalRestoreParams(StepParams):
    STEP: ClassVar[str] = "stashq.physical_restore"
    data_dir: Text                        #: with {replica}, {target}, {session}, {namespace}
    replicas: Annotated[int, BeforeValidator(lambda v: _blank_is_default(v) or 1),
                        Field(ge=1, le=MAX_REPLICAS)] = 1
    replica: Annotated[int, BeforeValidator(lambda v: _blank_is_default(v) or 0),
                       Field(ge=0, lt=MAX_REPLICAS)] = 0  #: set per copy by the plan
    prepare_args: Args = ()
    owner: Text = ""                      #: chown -R user[:group] afterwards

    @model_validator(mode="after")
    def _placeholders(self) -> PhysicalRestoreParams:
        fields = {name for _, name, _, _ in string.Formatter().parse(self.data_dir)
                  if name is not None}
        unknown = sorted(fields - DATA_DIR_FIELDS)
        if unknown:
            raise ValueError(f'"dataDir" has an unknown placeholder {{{unknown[0]}}} (known: '
                             f'{", ".join(sorted(DATA_DIR_FIELDS))})')
        if not self.data_dir:
            raise ValueError('"dataDir" is empty')
        if not self.data_dir.startswith("/"):
            raise ValueError(f'"dataDir" is "{self.data_dir}", not an absolute path')
        if max(self.replicas, self.replica + 1) > 1 and "replica" not in fields:
            raise ValueError('"dataDir" has no {replica}: every replica would be restored '
                             "into the same directory")
        return self

    def directory(self, *, target: str, session: str, namespace: str) -> str:
        """This copy's data directory: ``dataDir`` with its placeholders filled."""
        return self.data_dir.format(replica=self.replica, target=target, session=session,
                                    namespace=namespace)


class HookParams(StepParams):
    """The hook step: which phase's hooks it runs (the plan sets it, see workflows/hooks.py)."""

    STEP: ClassVar[str] = "stashq.pre_hooks"
    phase: Literal["preBackup", "postBackup", "preRestore", "postRestore"]


PARAMS: dict[str, type[StepParams]] = {
    cls.STEP: cls for cls in (DumpParams, RestoreParams, RetentionParams,
                              PhysicalPrecheckParams, PhysicalBackupParams,
                              PhysicalRestoreParams, HookParams)
} | {"stashq.post_hooks": HookParams} | {
    step: NoParams for step in ("stashq.precheck", "stashq.update_status", "stashq.push_metrics")}


def parse_params(step: str, raw: Mapping[str, str], *, where: str = "") -> StepParams:
    """The typed params of ``step``; ``InvalidResource`` names the param and why.
    ``where``: which step of which Task, for the message."""
    cls = PARAMS.get(step, RawParams)
    try:
        return cls.model_validate(dict(raw))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        value = raw.get(name, "")
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"is not a param of {step} (known: {', '.join(_known(cls))})"
        elif first["type"] == "missing":
            message = "is required"
        what = (f'param "{name}"' + (f' = "{value}"' if value else "") + ": ") if name else ""
        raise InvalidResource(f"{where}{what}{message}", path="spec.task.params") from None


def _known(cls: type[StepParams]) -> list[str]:
    return sorted(f.alias or n for n, f in cls.model_fields.items())
