"""YAML files and folders → raw resource dicts, each tagged with where it came from.

Raw means unvalidated: these dicts are handed to ``parsing.parse_resource`` and
nowhere else. Multi-document files and folders (``*.yaml``/``*.yml``/``*.json``, sorted,
recursive) are supported, as with ``kubectl apply -f``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from workflows.errors import InvalidResource

RawResource = dict[str, Any]
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def load_manifests(path: Path) -> list[tuple[str, RawResource]]:
    """Every document under ``path`` as ``(source, raw)``; empty documents are skipped."""
    if not path.exists():
        raise InvalidResource("no such file or directory", source=str(path))
    files = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES) \
        if path.is_dir() else [path]
    return [item for file in files for item in _documents(file)]


def load_text(text: str, source: str) -> list[tuple[str, RawResource]]:
    return list(_parse_documents(text, source))


def _documents(file: Path) -> Iterator[tuple[str, RawResource]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidResource(f"cannot be read: {e}", source=str(file)) from e
    yield from _parse_documents(text, str(file))


def _parse_documents(text: str, source: str) -> Iterator[tuple[str, RawResource]]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise InvalidResource(f"{where}not valid YAML ({problem})", source=source) from e
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
