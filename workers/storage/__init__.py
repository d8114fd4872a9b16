"""Repository backends behind one small protocol (see ``base.Storage``).

``open_storage`` is the one place that picks a backend by the Repository's spec.
"""

from __future__ import annotations

from pathlib import Path

from workers.storage.base import Storage
from workflows.errors import NotFound
from workflows.resources import Repository, Secret
from workflows.settings import Settings

ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name, not a secret


def open_storage(repository: Repository, secret: Secret | None, settings: Settings) -> Storage:
    backend = repository.spec.backend
    if backend.local is not None:
        from workers.storage.local import LocalStorage

        return LocalStorage(Path(backend.local.path))
    assert backend.s3 is not None
    if secret is None:
        raise NotFound(f'Repository "{repository.name}": spec.backend.storageSecretName is '
                       "required for an s3 backend")
    from workers.storage.s3 import S3Storage

    s3 = backend.s3
    return S3Storage(endpoint=s3.endpoint, bucket=s3.bucket, prefix=s3.prefix, region=s3.region,
                     access_key=secret.require(ACCESS_KEY), secret_key=secret.require(SECRET_KEY),
                     path_style=s3.path_style, insecure_tls=s3.insecure_tls,
                     part_bytes=settings.part_bytes, parts_in_flight=settings.parts_in_flight,
                     max_attempts=settings.s3_max_attempts)
