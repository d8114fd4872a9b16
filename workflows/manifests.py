"""The one reader of manifests: YAML files and folders, and JSON read back from a store,
→ raw resource dicts, each tagged with where it came from.

Raw means unvalidated: these dicts are handed to ``parsing.parse_resource`` and
nowhere else. Multi-document files and folders (``*.yaml``/``*.yml``/``*.json``, sorted,
recursive) are supported, as with ``kubectl apply -f``.

Every input is read as strictly as Kubernetes reads it, before anything is built from
it: at most ``MAX_MANIFEST_BYTES`` (a larger file is not even read whole), no duplicate
keys, no nesting past ``MAX_DEPTH``, no aliasing past ``MAX_NODES`` (``strict_yaml``).
Each refusal is an ``InvalidResource`` naming the file, the line where YAML gives one,
and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from workflows.bounds import (
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    OutOfBounds,
    check_bounds,
    size_text,
)
from workflows.errors import InvalidResource
from workflows.strict_yaml import MAX_SHOWN_KEY_CHARS, Refused, StrictLoader

RawResource = dict[str, Any]
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
TOO_LARGE = f"is larger than {size_text(MAX_MANIFEST_BYTES)}"


def load_manifests(path: Path) -> list[tuple[str, RawResource]]:
    """Every document under ``path`` as ``(source, raw)``; empty documents are skipped."""
    if not path.exists():
        raise InvalidResource("no such file or directory", source=str(path))
    files = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES) \
        if path.is_dir() else [path]
    return [item for file in files for item in _documents(file)]


def load_text(text: str, source: str) -> list[tuple[str, RawResource]]:
    if len(text) > MAX_MANIFEST_BYTES:
        raise InvalidResource(TOO_LARGE, source=source)
    return list(_parse_documents(text, source))


def load_json(body: bytes | str, source: str) -> Any:
    """One JSON value read back from a store, as strictly as a manifest file."""
    if len(body) > MAX_MANIFEST_BYTES:
        raise InvalidResource(TOO_LARGE, source=source)
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys)
        check_bounds(value, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_DEPTH)
    except RecursionError:  # json's decoder recurses too: 2,000 levels are enough
        raise InvalidResource(f"is nested more than {MAX_DEPTH} levels deep",
                              source=source) from None
    except (DuplicateKey, OutOfBounds) as e:
        raise InvalidResource(str(e), source=source) from None
    except ValueError as e:  # UnicodeDecodeError too
        raise InvalidResource(f"the stored JSON is unreadable ({e})", source=source) from None
    return value


class DuplicateKey(ValueError):
    """A JSON object names a key twice (Python's ``json`` keeps the last silently)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, item in pairs:
        if key in value:
            raise DuplicateKey(f'duplicate key "{key[:MAX_SHOWN_KEY_CHARS]}"')
        value[key] = item
    return value


def _documents(file: Path) -> Iterator[tuple[str, RawResource]]:
    try:
        with file.open("rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidResource(f"{TOO_LARGE} (the Kubernetes API server's bound)",
                                  source=str(file))
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidResource(f"cannot be read: {e}", source=str(file)) from e
    yield from _parse_documents(text, str(file))


def _parse_documents(text: str, source: str) -> Iterator[tuple[str, RawResource]]:
    try:
        documents = list(yaml.load_all(text, Loader=StrictLoader))
    except Refused as e:
        raise InvalidResource(f"{_line(e)}{e.problem}", source=source) from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        raise InvalidResource(f"{_line(e)}not valid YAML ({problem})", source=source) from e
    except ValueError as e:  # a scalar PyYAML cannot build: a 5,000-digit int, 2024-13-01
        raise InvalidResource(f"not valid YAML ({e})", source=source) from None
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        label = f"{source}#{index}" if len(documents) > 1 else source
        if not isinstance(doc, dict):
            raise InvalidResource("a resource must be a mapping", source=label)
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from ((f"{label}[{i}]", item) for i, item in enumerate(doc["items"]))
        else:
            yield label, doc


def _line(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}: " if mark is not None else ""
