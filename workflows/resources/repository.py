"""Repository: where snapshots live (an S3 bucket + prefix, or a local directory)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from workflows.resources.base import Compat, Model, Resource

BucketName = Annotated[
    str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
]


class S3Backend(Model):
    endpoint: str | None = None
    bucket: BucketName
    prefix: str = Field(default="", max_length=512)
    region: str = "us-east-1"
    insecure_tls: bool = Field(default=False, alias="insecureTLS")
    #: S3 servers other than AWS (SeaweedFS, MinIO, Ceph) need path-style addressing.
    path_style: bool = True


class LocalBackend(Model):
    mount_path: str = Field(min_length=1)
    sub_path: str = ""
    # Volume sources as Stash writes them; only meaningful on Kubernetes.
    host_path: Compat | None = None
    persistent_volume_claim: Compat | None = None
    nfs: Compat | None = None

    @property
    def path(self) -> str:
        return f"{self.mount_path.rstrip('/')}/{self.sub_path}".rstrip("/")


class Backend(Model):
    s3: S3Backend | None = None
    local: LocalBackend | None = None
    storage_secret_name: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Backend:
        if (self.s3 is None) == (self.local is None):
            raise ValueError("exactly one of s3 or local must be set")
        if self.s3 is not None and not self.storage_secret_name:
            raise ValueError("storageSecretName is required for an s3 backend")
        return self

    @property
    def description(self) -> str:
        if self.s3 is not None:
            where = self.s3.endpoint or "AWS S3"
            return f"s3://{self.s3.bucket}/{self.s3.prefix} at {where}"
        assert self.local is not None
        return f"local:{self.local.path}"


class RepositorySpec(Model):
    backend: Backend
    wipe_out: bool = False


class Repository(Resource):
    KIND: ClassVar[str] = "Repository"
    kind: Literal["Repository"]
    spec: RepositorySpec
