"""How large and how deep a manifest may be, and one walk that checks a parsed value.

Kubernetes refuses request bodies above 3 MiB, JSON nested past 10,000 levels and YAML
with excessive aliasing (the "billion laughs" of CVE-2019-11253). StashQ reads the same
manifests with PyYAML and pydantic, whose costs differ from Go's, so its bounds are sized
for them; every door (``stashq apply``, the stores, the scheduler, the watcher) applies
them before a value is validated, serialized or stored.

The hard part: a value built from YAML aliases (or by any caller) may share its pieces,
so its serialized size can be exponential in the memory it takes, or infinite if it
contains itself. ``check_bounds`` walks it as a serializer would, counting every visit,
and stops at the bound: it costs at most ``max_bytes`` steps whatever the value.
"""

from __future__ import annotations

#: Largest manifest file or stored object read, in bytes: Kubernetes' API server refuses
#: request bodies above 3 MiB, so whatever ``kubectl apply`` can send, StashQ reads. The
#: same bound holds for one resource with its aliases expanded (what would be stored).
MAX_MANIFEST_BYTES = 3 * 2**20
#: Deepest nesting of mappings and lists in a manifest. The deepest Stash field
#: (``spec.runtimeSettings.pod.affinity…matchExpressions[].values``) is 13 levels, and
#: the ``managedFields`` Kubernetes adds mirror it a few levels deeper; PyYAML composes
#: recursively, about four Python frames a level, so 64 stays far below Python's
#: 1,000-frame limit.
MAX_DEPTH = 64
#: Most YAML nodes in one file, aliases expanded. PyYAML composes 20,000 to 35,000 nodes
#: a second at ~0.6 KiB each, so this caps a hostile file at ~2 s and ~30 MiB; a resource
#: is 20 to 100 nodes (``kubectl get -o yaml`` adds ``managedFields``), so a List of 500.
MAX_NODES = 50_000
#: Largest serialized size of one field kept only for compatibility with Stash manifests
#: (``hooks``, ``runtimeSettings``, AppBinding ``parameters``…): the room Kubernetes gives
#: all of an object's annotations together, its other free-form data (256 KiB).
MAX_COMPAT_BYTES = 256 * 2**10
#: Deepest nesting inside one such field; the deepest Stash one (``runtimeSettings``
#: pod affinity) is 11 levels.
MAX_COMPAT_DEPTH = 32

#: Python refuses to print integers of more than 4,300 digits (about 14,000 bits);
#: longer ones are sized from their bits, at log10(2) decimal digits a bit.
_PRINTABLE_INT_BITS = 4_000
_DIGITS_PER_BIT = 0.30103


class OutOfBounds(ValueError):
    """A value passes a bound; the message says which (``is larger than 3 MiB …``)."""


def check_bounds(value: object, *, max_bytes: int, max_depth: int) -> None:
    """Raise ``OutOfBounds`` saying which bound ``value`` passes: its size serialized as
    JSON (each shared piece counted every time it appears), or its nesting of mappings
    and lists. Costs at most ``max_bytes`` steps."""
    size = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            depth += 1
            if depth > max_depth:
                raise OutOfBounds(f"is nested more than {max_depth} levels deep")
            children = list(item.values() if isinstance(item, dict) else item)
            size += 1 + max(len(children), 1)  # brackets and commas
            if isinstance(item, dict):
                size += sum(_scalar_size(key) + 1 for key in item)  # keys and colons
            stack.extend((child, depth) for child in children)
        else:
            size += _scalar_size(item)
        if size > max_bytes:
            raise OutOfBounds(f"is larger than {size_text(max_bytes)} serialized")


def size_text(n_bytes: int) -> str:
    """``3145728`` → ``3 MiB``; ``262144`` → ``256 KiB``."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale and n_bytes % scale == 0:
            return f"{n_bytes // scale} {unit}"
    return f"{n_bytes} bytes"


def _scalar_size(item: object) -> int:
    """Bytes of ``item`` in compact JSON (strings without their escapes)."""
    if isinstance(item, str):
        return len(item) + 2
    if item is None or isinstance(item, bool):
        return len(str(item))  # null, true, false
    if isinstance(item, int) and item.bit_length() > _PRINTABLE_INT_BITS:
        return int(item.bit_length() * _DIGITS_PER_BIT) + 1
    if isinstance(item, int | float):
        return len(repr(item))
    return len(str(item)) + 2  # a date or timestamp YAML gave, written as a string
