"""Task (an ordered list of steps) and Function (what a step runs).

In Stash a Function names a container image; here it names the worker step, a
Celery task such as ``stashq.dump_upload``. A Task may pin the database flavor and
server versions it is meant for; pre-check enforces them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, field_validator

from workflows.resources.appbinding import Engine
from workflows.resources.base import Model, Name, Param, Resource

STEP_NAME_PATTERN = r"^stashq\.[a-z_]+$"


class TaskStep(Model):
    name: Name
    params: tuple[Param, ...] = ()


class TaskSpec(Model):
    steps: tuple[TaskStep, ...] = Field(min_length=1)
    engine: Engine | None = None
    #: PEP 440 specifier matched against the server's version, e.g. ">=10.5,<12".
    server_versions: str | None = None

    @field_validator("server_versions")
    @classmethod
    def _specifier(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                SpecifierSet(value)
            except InvalidSpecifier:
                raise ValueError(f'"{value}" is not a version specifier') from None
        return value


class Task(Resource):
    KIND: ClassVar[str] = "Task"
    kind: Literal["Task"]
    spec: TaskSpec


class FunctionSpec(Model):
    step: str = Field(pattern=STEP_NAME_PATTERN)
    params: tuple[Param, ...] = ()
    # Stash's container fields, accepted for ported manifests, unused by the worker.
    image: str | None = None
    args: tuple[str, ...] = ()


class Function(Resource):
    KIND: ClassVar[str] = "Function"
    kind: Literal["Function"]
    spec: FunctionSpec
