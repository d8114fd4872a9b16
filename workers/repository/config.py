"""A repository's ``config.json``: its format version and, if it is encrypted, how to
open its key with the password. Written once, by the first backup, under the
repository's exclusive lock (it holds a random key: a second writer's would be lost).
"""

from __future__ import annotations

from workers.encryption import PASSWORD_KEY, new_encryption, open_encryption
from workers.repository.chunks import DEFAULT_CHUNKER
from workers.repository.streams import Cipher, read_all
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound, PrecheckFailed
from workflows.snapshots import (
    CONFIG_KEY,
    DEDUP_FORMAT_VERSION,
    LATEST_FORMAT_VERSION,
    RepositoryConfig,
    new_config,
)


def read_config(storage: Storage) -> RepositoryConfig | None:
    """``config.json``, or None for a new repository; refuses a format newer than ours."""
    try:
        data = read_all(storage, CONFIG_KEY)
    except NotFound:
        return None
    try:
        config = RepositoryConfig.from_json(data)
    except ValueError as e:
        raise IntegrityError(f"{CONFIG_KEY} is unreadable: {e}") from e
    if config.format_version > LATEST_FORMAT_VERSION:
        raise IntegrityError(f"repository format {config.format_version} is newer than this "
                             f"StashQ understands ({LATEST_FORMAT_VERSION}); upgrade StashQ")
    if config.format_version == DEDUP_FORMAT_VERSION and config.chunker is None:
        raise IntegrityError(f"{CONFIG_KEY}: a format {DEDUP_FORMAT_VERSION} repository "
                             "names no chunker")
    return config


def create_config(storage: Storage, password: str | None,
                  format_version: int = DEDUP_FORMAT_VERSION) -> RepositoryConfig:
    """Write a new repository's ``config.json``: encrypted if there is a password; format
    3 (deduplicating) unless an older ``format_version`` is asked for."""
    encryption = None if password is None else new_encryption(password)[0]
    chunker = DEFAULT_CHUNKER if format_version >= DEDUP_FORMAT_VERSION else None
    config = new_config(encryption, chunker)
    storage.put_stream(CONFIG_KEY, [config.to_json()])
    return config


def unlock(config: RepositoryConfig | None, password: str | None, *, repository: str,
           secret: str | None) -> Cipher:
    """The cipher for a repository with ``config`` (None: not created yet), or
    ``PrecheckFailed`` naming the Repository and Secret (never the password)."""
    holder = f'{PASSWORD_KEY} in Secret "{secret}"' if secret else PASSWORD_KEY
    encryption = config.encryption if config is not None else None
    if encryption is None:
        if config is not None and password is not None:
            raise PrecheckFailed(f'Repository "{repository}" is not encrypted, but {holder} '
                                 "is set: remove it, or use a new repository (another "
                                 "prefix) to encrypt")
        return None
    if password is None:
        raise PrecheckFailed(f'Repository "{repository}" is encrypted: set its password as '
                             f"{PASSWORD_KEY} in Secret "
                             f'"{secret or "(spec.backend.storageSecretName)"}"')
    try:
        return open_encryption(encryption, password)
    except PrecheckFailed as e:
        raise PrecheckFailed(f'Repository "{repository}": {holder}: {e}') from None
