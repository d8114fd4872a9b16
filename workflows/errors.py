"""The error tree every StashQ component raises, with messages written for people.

    StashQError                 exit code 1, message shown as is
    ├── InvalidResource         a resource file or object failed validation (exit 2)
    ├── NotFound                a referenced resource or secret does not exist (exit 3)
    ├── PrecheckFailed          the database, client or repository is not ready (exit 4)
    ├── StorageError            the repository backend refused or failed (exit 5)
    │   └── BucketNotFound
    ├── DumpFailed              the dump or restore client failed (exit 6)
    ├── IntegrityError          stored data does not match its manifest (exit 7)
    ├── SessionFailed           a waited-for session ended Failed (exit 8)
    └── HookFailed              a hook failed, timed out, or could not run (exit 9)

``Transient`` is a mixin for failures worth retrying (network blips, 5xx).
Adapters translate library exceptions into this tree at their seam, chained ``from``
the original, so a session's status always carries one readable sentence.
"""

from __future__ import annotations


class StashQError(Exception):
    """Base of every error StashQ reports to a user."""

    exit_code = 1

    @property
    def reason(self) -> str:
        return str(self)


class Transient:
    """Marker mixin: the same operation may succeed if retried later."""


class InvalidResource(StashQError):
    exit_code = 2

    def __init__(self, reason: str, *, source: str = "", kind: str = "",
                 name: str = "", path: str = "") -> None:
        self.source, self.kind, self.name, self.path, self.detail = source, kind, name, path, reason
        where = []
        if source:
            where.append(f"{source}:")
        if kind:
            where.append(f'{kind} "{name}":' if name else f"{kind}:")
        if path:
            where.append(f"{path}:")
        super().__init__(" ".join([*where, reason]))


class NotFound(StashQError):
    exit_code = 3


class PrecheckFailed(StashQError):
    exit_code = 4


class StorageError(StashQError):
    exit_code = 5


class TransientStorageError(StorageError, Transient):
    pass


class BucketNotFound(StorageError):
    pass


class DumpFailed(StashQError):
    exit_code = 6


class IntegrityError(StashQError):
    exit_code = 7


class SessionFailed(StashQError):
    exit_code = 8


class HookFailed(StashQError):
    exit_code = 9
