"""A repository's ``config.json``: its format version and, if it is encrypted, how to
open its key with the password. Written once, by the first backup, under the
repository's exclusive lock (it holds a random key: a second writer's would be lost).
"""

from __future__ import annotations

from workers.encryption import PASSWORD_KEY, new_encryption, open_encryption
from workers.repository.streams import Cipher, read_all
from workers.storage.base import Storage
from workflows.errors import IntegrityError, NotFound, PrecheckFailed
from workflows.snapshots import CONFIG_KEY, ENCRYPTED_FORMAT_VERSION, RepositoryConfig, new_config


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
    if config.format_version > ENCRYPTED_FORMAT_VERSION:
        raise IntegrityError(f"repository format {config.format_version} is newer than this "
                             f"StashQ understands ({ENCRYPTED_FORMAT_VERSION}); upgrade StashQ")
    return config


def create_config(storage: Storage, password: str | None) -> RepositoryConfig:
    """Write a new repository's ``config.json``: encrypted if there is a password."""
    config = new_config(None if password is None else new_encryption(password)[0])
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
