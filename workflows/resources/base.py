"""Shared building blocks of the resource models.

Field names are spelled as Stash spells them (camelCase on the wire, snake_case in
Python), so users port manifests by changing ``apiVersion``. Models are frozen and
reject unknown fields inside ``spec``: a typo is an error with its path, not a
silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from workflows.bounds import MAX_COMPAT_BYTES, MAX_COMPAT_DEPTH, check_bounds

T = TypeVar("T")

#: Kubernetes object names: RFC 1123 subdomain (lowercase, digits, '-', '.').
Name = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    ),
]


def _bounded(value: T) -> T:
    check_bounds(value, max_bytes=MAX_COMPAT_BYTES, max_depth=MAX_COMPAT_DEPTH)
    return value


#: A field StashQ keeps for compatibility with Stash manifests (``hooks``,
#: ``runtimeSettings``, AppBinding ``parameters``, …): free-form, so bounded in size and
#: depth instead of typed; the code that reads one reads its keys one by one.
Compat = Annotated[dict[str, Any], AfterValidator(_bounded)]
CompatList = Annotated[tuple[dict[str, Any], ...], AfterValidator(_bounded)]

API_GROUP = "stashq.io"
API_VERSION = f"{API_GROUP}/v1alpha1"
#: Stash's own groups: accepted so that ported manifests parse unchanged.
STASH_API_VERSIONS = frozenset(
    {"stash.appscode.com/v1alpha1", "stash.appscode.com/v1beta1"}
)


class Model(BaseModel):
    """A frozen model that reads camelCase and refuses unknown fields."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class Metadata(BaseModel):
    """Object metadata; extra keys Kubernetes adds (uid, managedFields, ...) are kept."""

    model_config = ConfigDict(frozen=True, extra="allow", alias_generator=to_camel,
                              populate_by_name=True)

    name: Name
    namespace: Name = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resource_version: str | None = None


class LocalRef(Model):
    """A reference by name to an object in the same (or a given) namespace."""

    name: Name
    namespace: Name | None = None


class TargetRef(Model):
    api_version: str = "appcatalog.appscode.com/v1alpha1"
    kind: str = "AppBinding"
    name: Name
    namespace: Name | None = None


class Param(Model):
    name: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=4096)


class TaskRef(Model):
    name: Name | None = None
    params: tuple[Param, ...] = ()

    def param_map(self) -> dict[str, str]:
        return {p.name: p.value for p in self.params}


class Resource(Model):
    """Base of every top-level kind: apiVersion, kind, metadata, and a spec."""

    KIND: ClassVar[str] = ""
    API_VERSIONS: ClassVar[frozenset[str]] = frozenset({API_VERSION}) | STASH_API_VERSIONS

    api_version: str
    kind: str
    metadata: Metadata
    status: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.metadata.name

    def definition(self) -> dict[str, Any]:
        """What a user defines: everything but status and server-written metadata.
        Two resources with equal definitions are the same to ``apply`` ("unchanged")."""
        fields = self.model_dump(mode="json", by_alias=True, exclude={"status", "metadata"})
        return fields | {"labels": self.metadata.labels,
                         "annotations": self.metadata.annotations}

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def owner_references(self) -> list[dict[str, Any]]:
        """``metadata.ownerReferences`` of an object this one controls, so that deleting
        this one deletes it (Kubernetes' garbage collector); none without a ``uid``
        (a store that has no owners, or an object not yet stored)."""
        uid = (self.metadata.model_extra or {}).get("uid")
        if not uid:
            return []
        return [{"apiVersion": API_VERSION, "kind": self.kind, "name": self.name,
                 "uid": str(uid), "controller": True, "blockOwnerDeletion": False}]
