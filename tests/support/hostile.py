"""Hostile manifests (issue 19): each is the BackupConfiguration "nightly", valid but for
one shape that StashQ must refuse quickly, with little memory and a reason.

Shared by the malformed-resource corpus, its fuzz test and the test that runs the real
``stashq apply`` on each.
"""

from __future__ import annotations

from typing import Any

from workflows.bounds import (
    MAX_COMPAT_BYTES,
    MAX_COMPAT_DEPTH,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_NODES,
)

CONFIG_YAML = """apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata:
  name: nightly
spec:
  schedule: "0 3 * * *"
  repository: {name: repo}
  target: {ref: {name: db}}
"""


def alias_bomb(levels: int = 9, fan: int = 10) -> str:
    """The issue's "billion laughs": ``fan ** levels`` leaves from a few hundred bytes,
    as the lines of a block mapping under a field of ``spec``."""
    lines = ['    l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def typed_alias_bomb(levels: int = 9, fan: int = 10) -> str:
    """The same bomb as the items of ``spec.task.params``, a typed field."""
    items = ['&p0 ["lol"]'] + [f"&p{i} [" + ", ".join([f"*p{i - 1}"] * fan) + "]"
                               for i in range(1, levels + 1)]
    return "  task:\n    params:\n" + "".join(f"      - {item}\n" for item in items)


def merge_bomb(levels: int = 9, fan: int = 10) -> str:
    """A bomb made of merge keys (``<<``): each level merges the one below ``fan`` times."""
    lines = ["    m0: &m0 {lol: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"    m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * fan) + "]}")
    return "\n".join(lines) + "\n"


def flow_nesting(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_value(depth: int) -> dict[str, Any]:
    """``{"a": {"a": … {}}}``: ``depth`` mappings, one inside the other."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def shared_bomb(levels: int, fan: int = 10) -> list[Any]:
    """A Python value whose pieces are shared, as PyYAML builds aliases: small in memory,
    ``fan ** levels`` leaves serialized."""
    value: list[Any] = ["lol"]
    for _ in range(levels):
        value = [value] * fan
    return value


def string_amplification(copies: int, chars: int) -> str:
    """Annotations that all alias one long string: few nodes, a large expanded document."""
    lines = [f"    a0: &s {'x' * chars}"] + [f"    a{i}: *s" for i in range(1, copies)]
    return "metadata:\n  annotations:\n" + "\n".join(lines) + "\n"


def with_spec(extra: str) -> str:
    return CONFIG_YAML + extra


#: name → (manifest text, a piece of the reason the refusal must give)
HOSTILE: dict[str, tuple[str, str]] = {
    "duplicate-schedule": (with_spec('  schedule: "*/1 * * * *"\n'),
                           'duplicate key "schedule" (first on line'),
    "duplicate-name": (CONFIG_YAML.replace("  name: nightly\n",
                                           "  name: nightly\n  name: hourly\n"),
                       'duplicate key "name"'),
    "alias-bomb-in-compat-field": (with_spec("  runtimeSettings:\n" + alias_bomb()),
                                   "excessive aliasing"),
    "alias-bomb-in-typed-field": (with_spec(typed_alias_bomb()), "excessive aliasing"),
    "alias-bomb-of-merge-keys": (with_spec("  runtimeSettings:\n" + merge_bomb()),
                                 "excessive aliasing"),
    "recursive-alias": (with_spec("  runtimeSettings: &h {again: *h}\n"),
                        "refers to a node that contains it"),
    "deep-nesting": (with_spec(f"  runtimeSettings: {{a: {flow_nesting(20_000)}}}\n"),
                     f"nested more than {MAX_DEPTH} levels deep"),
    "dense-document": (with_spec("  runtimeSettings: {zeros: ["
                                 + ",".join(["0"] * (MAX_NODES + 10_000)) + "]}\n"),
                       f"more than {MAX_NODES:,} nodes"),
    "oversize-document": (with_spec(f"  runtimeSettings: {{pad: {'x' * MAX_MANIFEST_BYTES}}}\n"),
                          "is larger than 3 MiB"),
    "string-amplification": (CONFIG_YAML.replace("metadata:\n  name: nightly\n",
                                            string_amplification(20, 200_000)
                                            + "  name: nightly\n"),
                             "is larger than 3 MiB serialized"),
    "oversize-compat-field": (with_spec(f"  runtimeSettings: {{script: "
                                        f"{'x' * MAX_COMPAT_BYTES}}}\n"),
                              "spec.runtimeSettings: is larger than 256 KiB serialized"),
    "overdeep-compat-field": (with_spec(f"  runtimeSettings: {{a: {flow_nesting(40)}}}\n"),
                              f"spec.runtimeSettings: is nested more than {MAX_COMPAT_DEPTH} "
                              "levels deep"),
}
