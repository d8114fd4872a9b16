"""Session names: deterministic, so the create is the exactly-once arbiter.

A scheduled slot of configuration ``nightly`` at unix time T becomes BackupSession
``nightly-T``; a second scheduler replica computing the same slot collides on the name
(``SET NX`` / ``409 AlreadyExists``) instead of starting a second backup.
"""

from __future__ import annotations

#: Kubernetes names are at most 253 characters; leave room for "-<unix time>".
MAX_CONFIG_NAME_CHARS = 253 - 11


def session_name(config: str, slot_unix: int) -> str:
    return f"{config[:MAX_CONFIG_NAME_CHARS]}-{slot_unix}"
