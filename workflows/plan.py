"""Task → plan: the ordered steps a session runs, with their merged parameters.

A plan is plain data (step names and string params); ``workers.chains`` turns it into
a Celery chain. Parameters merge in Stash's order: Function defaults, then the
Task step's params, then the invoking configuration's ``task.params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from workflows.errors import InvalidResource, NotFound
from workflows.resources import Engine, Function, Task

#: A step with this param runs as that many parallel copies (a Celery group), each
#: told its index in param ``replica`` (e.g. one physical restore per cluster replica).
REPLICAS_PARAM = "replicas"
REPLICA_PARAM = "replica"
#: More parallel copies than this is a typo, not a cluster.
MAX_REPLICAS = 64


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
        steps.append(PlanStep(function=function.name, step=function.spec.step, params=params))
    known = {name for step in steps for name in step.params}
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise InvalidResource(f'param "{unknown[0]}" is not used by any step of Task '
                              f'"{task.name}" (known: {", ".join(sorted(known)) or "none"})',
                              path="spec.task.params")
    return Plan(task=task.name, steps=tuple(steps), engine=task.spec.engine,
                server_versions=task.spec.server_versions)
