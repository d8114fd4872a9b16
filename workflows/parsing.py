"""Raw dicts → immutable models, with one error type naming file, resource, field and
reason: ``backup.yaml: BackupConfiguration "nightly": spec.schedule: "61 * * * *" is
not a cron expression``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

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

#: Longest piece of a bad value quoted back in an error message, in characters.
MAX_SHOWN_CHARS = 80

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


def parse_all(items: Iterable[tuple[str, RawResource]]) -> list[Resource]:
    """Parse every item or raise on the first invalid one (all or nothing)."""
    return [parse_resource(raw, source=source) for source, raw in items]


def _name_of(raw: dict[str, Any]) -> str:
    metadata = raw.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name[:80] if isinstance(name, str) else ""


def _translate(error: ValidationError, *, source: str, kind: str, name: str) -> InvalidResource:
    first = error.errors(include_url=False)[0]
    path = format_loc(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "is required"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field"
    elif first["type"] == "string_pattern_mismatch":
        shown = str(first["input"])[:MAX_SHOWN_CHARS]
        message = f'"{shown}" does not match {first["ctx"]["pattern"]}'
    return InvalidResource(message, source=source, kind=kind, name=name, path=path)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``("spec", "steps", 0, "name")`` → ``spec.steps[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
