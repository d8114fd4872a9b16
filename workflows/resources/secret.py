"""Kubernetes Secret (``v1``): ``data`` (base64) and ``stringData``, merged.

Values never appear in ``repr`` or ``str``: models end up in logs and tracebacks.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from workflows.errors import NotFound
from workflows.resources.base import Resource


class Secret(Resource):
    KIND: ClassVar[str] = "Secret"
    API_VERSIONS: ClassVar[frozenset[str]] = frozenset({"v1"})
    kind: Literal["Secret"]
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    string_data: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("data")
    @classmethod
    def _base64(cls, data: dict[str, str]) -> dict[str, str]:
        for key, value in data.items():
            try:
                base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise ValueError(f'data["{key}"] is not base64-encoded UTF-8 text') from None
        return data

    @property
    def values(self) -> dict[str, str]:
        """Decoded values; stringData wins over data, as in Kubernetes."""
        decoded = {k: base64.b64decode(v).decode() for k, v in self.data.items()}
        return decoded | self.string_data

    def definition(self) -> dict[str, Any]:
        """As ``Resource.definition``, with the values decoded: ``data`` and ``stringData``
        holding the same values are the same Secret (the API server keeps ``data`` only)."""
        return {"type": self.type, "values": self.values, "labels": self.metadata.labels,
                "annotations": self.metadata.annotations}

    def require(self, key: str) -> str:
        try:
            return self.values[key]
        except KeyError:
            raise NotFound(f'Secret "{self.name}" has no key "{key}"') from None
