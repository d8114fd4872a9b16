"""Raw dicts → immutable models, with one error type naming file, resource, field and
reason: ``backup.yaml: BackupConfiguration "nightly": spec.schedule: "61 * * * *" is
not a cron expression``. Every field that is wrong is named, not only the first, and an
unknown field gets the nearest known one: ``spec.schedul: is not a known field (did
you mean "schedule"?)``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from workflows.bounds import MAX_DEPTH, MAX_MANIFEST_BYTES, OutOfBounds, check_bounds
from workflows.errors import InvalidResource
from workflows.manifests import RawResource
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

R = TypeVar("R", bound=Resource)

#: Longest piece of a bad value quoted back in an error message, in characters.
MAX_SHOWN_CHARS = 80
#: Problems of one resource named in its error at most (a garbled file has hundreds).
MAX_PROBLEMS = 10

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (Repository, AppBinding, BackupConfiguration, BackupSession,
                RestoreSession, Task, Function, Secret, HookTemplate,
                RestoreDrill)
}


def parse_resource(raw: Any, *, source: str = "<input>") -> Resource:
    """Validate one raw object; raise ``InvalidResource`` naming where and why."""
    if not isinstance(raw, dict):
        raise InvalidResource("a resource must be a mapping", source=source)
    kind, name = raw.get("kind"), _name_of(raw)
    try:  # whatever built ``raw`` (a reader, a store's client), before pydantic walks it
        check_bounds(raw, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_DEPTH)
    except OutOfBounds as e:
        known = kind if isinstance(kind, str) and kind in KINDS else ""
        raise InvalidResource(str(e), source=source, kind=known, name=name) from None
    if not isinstance(kind, str) or kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise InvalidResource(f'unknown kind "{kind}" (known: {known})', source=source,
                              name=name, path="kind")
    cls = KINDS[kind]
    api_version = raw.get("apiVersion")
    if api_version not in cls.API_VERSIONS:
        expected = " or ".join(sorted(cls.API_VERSIONS))
        raise InvalidResource(f'"{api_version}" is not supported (expected {expected})',
                              source=source, kind=kind, name=name, path="apiVersion")
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise _translate(e, source=source, kind=kind, name=name) from None


def parse_as(cls: type[R], raw: Any, *, source: str) -> R:
    """``parse_resource`` for an object read back as kind ``cls`` (from a store)."""
    resource = parse_resource(raw, source=source)
    if not isinstance(resource, cls):
        raise InvalidResource(f"expected kind {cls.KIND}", source=source,
                              kind=resource.kind, name=resource.name)
    return resource


def parse_all(items: Iterable[tuple[str, RawResource]]) -> list[Resource]:
    """Parse every item or raise on the first invalid one (all or nothing)."""
    return [parse_resource(raw, source=source) for source, raw in items]


def _name_of(raw: dict[str, Any]) -> str:
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name[:80] if isinstance(name, str) else ""


def _translate(error: ValidationError, *, source: str, kind: str, name: str) -> InvalidResource:
    """Every problem pydantic found (one per field path, at most ``MAX_PROBLEMS``) as one
    error: ``spec.schedul: is not a known field (did you mean "schedule"?); ...``."""
    cls = KINDS[kind]
    problems: dict[str, str] = {}
    for item in error.errors(include_url=False):
        path = format_loc(item["loc"])
        if path not in problems and len(problems) < MAX_PROBLEMS:
            problems[path] = _message(item, cls)
    if len(problems) == 1:
        [(path, message)] = problems.items()
        return InvalidResource(message, source=source, kind=kind, name=name, path=path)
    return InvalidResource("; ".join(f"{p}: {m}" for p, m in problems.items()), source=source,
                           kind=kind, name=name)


def _message(item: Any, cls: type[Resource]) -> str:
    if item["type"] == "missing":
        return "is required"
    if item["type"] == "extra_forbidden":
        return "is not a known field" + _suggestion(str(item["loc"][-1]),
                                                    known_fields(cls, item["loc"][:-1]))
    if item["type"] == "string_pattern_mismatch":
        shown = str(item["input"])[:MAX_SHOWN_CHARS]
        return f'"{shown}" does not match {item["ctx"]["pattern"]}'
    return str(item["msg"]).removeprefix("Value error, ")


def _suggestion(wrong: str, known: list[str]) -> str:
    close = difflib.get_close_matches(wrong, known, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (known: {', '.join(known)})" if known else ""


def known_fields(cls: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The wire names of the fields of the model found at ``loc`` in ``cls`` (empty if
    there is none there: a free-form mapping)."""
    model: type[BaseModel] | None = cls
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside ``X | None``, ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``("spec", "steps", 0, "name")`` → ``spec.steps[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
