"""Task → plan: the ordered steps a session runs, with their merged parameters.

A plan is plain data (step names and string params); ``workers.chains`` turns it into
a Celery chain. Parameters merge in Stash's order: Function defaults, then the
Task step's params, then the invoking configuration's ``task.params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from workflows.catalog import DEFAULT_TASKS, builtin_tasks
from workflows.errors import InvalidResource, NotFound
from workflows.params import MAX_REPLICAS, StepParams, parse_params
from workflows.resources import Engine, Function, Task
from workflows.resources.base import TaskRef

#: A step with this param runs as that many parallel copies (a Celery group), each
#: told its index in param ``replica`` (e.g. one physical restore per cluster replica).
REPLICAS_PARAM = "replicas"
REPLICA_PARAM = "replica"


@dataclass(frozen=True)
class PlanStep:
    function: str
    step: str  #: Celery task name, e.g. "stashq.dump_upload"
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def replicas(self) -> int:
        """Parallel copies of this step: param ``replicas`` (1 when absent or empty)."""
        raw = self.params.get(REPLICAS_PARAM, "").strip()
        if not raw:
            return 1
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
            raise InvalidResource(f'step "{self.function}": param "{REPLICAS_PARAM}" is '
                                  f'"{raw}"; expected a number from 1 to {MAX_REPLICAS}',
                                  path="spec.task.params")
        return int(raw)

    def replica_params(self) -> list[dict[str, str]]:
        """The params of each parallel copy: this step's, plus its ``replica`` index."""
        return [{**self.params, REPLICA_PARAM: str(i)} for i in range(self.replicas)]


@dataclass(frozen=True)
class Plan:
    task: str
    steps: tuple[PlanStep, ...]
    engine: Engine | None = None
    server_versions: str | None = None

    def step_params(self, step: str) -> Mapping[str, str]:
        """Params of the first step implemented by ``step`` (empty if absent)."""
        return next((s.params for s in self.steps if s.step == step), {})

    def typed_params(self, step: str) -> StepParams:
        """``step_params``, typed (``workflows/params.py``); defaults if the step is absent."""
        return parse_params(step, self.step_params(step))


def resolve_task(task: Task, functions: Mapping[str, Function],
                 overrides: Mapping[str, str] | None = None) -> Plan:
    """Resolve every step's Function; raise ``NotFound`` naming the missing one."""
    steps = []
    for index, task_step in enumerate(task.spec.steps):
        function = functions.get(task_step.name)
        if function is None:
            raise NotFound(f'Task "{task.name}": spec.steps[{index}]: Function '
                           f'"{task_step.name}" does not exist')
        params = {p.name: p.value for p in function.spec.params}
        params |= {p.name: p.value for p in task_step.params}
        params |= {k: v for k, v in (overrides or {}).items() if k in params}
        parse_params(function.spec.step, params,  # a bad value fails here, at apply
                     where=f'Task "{task.name}" step "{function.name}": ')
        steps.append(PlanStep(function=function.name, step=function.spec.step, params=params))
    known = {name for step in steps for name in step.params}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise InvalidResource(f'param "{unknown[0]}" is not used by any step of Task '
                              f'"{task.name}" (known: {", ".join(sorted(known)) or "none"})',
                              path="spec.task.params")
    return Plan(task=task.name, steps=tuple(steps), engine=task.spec.engine,
                server_versions=task.spec.server_versions)


def plan_for(task_ref: TaskRef, *, kind: Literal["backup", "restore"], engine: Engine,
             tasks: Mapping[str, Task], functions: Mapping[str, Function],
             replicas: int | None = None) -> Plan:
    """The plan of a BackupConfiguration or RestoreSession: the Task it names (or its
    engine's default) resolved with its params. ``tasks`` and ``functions``: the
    user-applied ones over the built-ins. ``replicas``: Stash's ``spec.target.replicas``,
    one copy of a step that takes ``replicas`` per replica unless a param says otherwise.
    """
    name = task_ref.name or DEFAULT_TASKS[(engine, kind)]
    task = tasks.get(name)
    if task is None:
        raise NotFound(f'Task "{name}" does not exist (built-in: '
                       f'{", ".join(sorted(builtin_tasks()))})')
    overrides = task_ref.param_map()
    plan = resolve_task(task, functions, overrides)
    wants = any(REPLICAS_PARAM in s.params for s in plan.steps)
    if replicas is not None and wants and REPLICAS_PARAM not in overrides:
        plan = resolve_task(task, functions, overrides | {REPLICAS_PARAM: str(replicas)})
    return plan
