"""AppBinding, read as KubeDB writes it: how to reach a database and which Secret
holds its credentials.

KubeDB writes ``spec.type`` as ``kubedb.com/mysql``, and both ``clientConfig.url``
(``tcp(host:port)/``) and ``clientConfig.service``; the url wins when both are set.
Plain ``mysql://host:port`` URLs and a service alone work too. The service port is
honoured (Stash issue #1272 ignored it).
"""

from __future__ import annotations

import enum
import re
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from workflows.resources.base import Compat, CompatList, Model, Name, Resource

DEFAULT_PORT = 3306

_TCP_URL = re.compile(r"^tcp\((?P<host>[^:()]+)(?::(?P<port>\d+))?\)/?.*$")


class Engine(enum.StrEnum):
    """Database flavors StashQ knows; values are the AppBinding type suffixes."""

    MYSQL = "mysql"
    MARIADB = "mariadb"
    PERCONA_XTRADB = "perconaxtradb"


class ServiceRef(Model):
    name: Name
    namespace: Name | None = None
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    scheme: str = "mysql"
    path: str = ""


class ClientConfig(Model):
    url: str | None = None
    service: ServiceRef | None = None
    ca_bundle: str | None = None
    insecure_skip_tls_verify: bool = False

    @model_validator(mode="after")
    def _an_address(self) -> ClientConfig:
        # KubeDB writes both; the url, when present, is the one address used.
        if self.url is None and self.service is None:
            raise ValueError("one of url or service must be set")
        if self.url is not None:
            parse_address(self.url)
        return self


class SecretRef(Model):
    api_group: str | None = None
    kind: str | None = None
    name: Name


class AppBindingSpec(Model):
    type: str
    version: str | None = None
    client_config: ClientConfig
    secret: SecretRef
    secret_transforms: CompatList = ()
    parameters: Compat = Field(default_factory=dict)
    app_ref: Compat | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        engine_of(value)
        return value


class AppBinding(Resource):
    KIND: ClassVar[str] = "AppBinding"
    API_VERSIONS: ClassVar[frozenset[str]] = frozenset({"appcatalog.appscode.com/v1alpha1"})
    kind: Literal["AppBinding"]
    spec: AppBindingSpec

    @property
    def engine(self) -> Engine:
        return engine_of(self.spec.type)

    def address(self) -> tuple[str, int]:
        """(host, port) of the database server."""
        config = self.spec.client_config
        if config.url is not None:
            return parse_address(config.url)
        assert config.service is not None
        svc = config.service
        host = f"{svc.name}.{svc.namespace}.svc" if svc.namespace else svc.name
        return host, svc.port


def engine_of(app_type: str) -> Engine:
    """Map ``kubedb.com/mariadb``, ``mariadb`` … to an Engine, or raise ValueError."""
    suffix = app_type.rsplit("/", 1)[-1].lower().replace("-", "")
    try:
        return Engine(suffix)
    except ValueError:
        known = ", ".join(e.value for e in Engine)
        raise ValueError(f'unknown database type "{app_type}" (known: {known})') from None


def parse_address(url: str) -> tuple[str, int]:
    """Host and port from ``tcp(host:port)/`` (KubeDB) or ``mysql://host:port``."""
    match = _TCP_URL.match(url)
    if match:
        return match["host"], int(match["port"] or DEFAULT_PORT)
    parts = urlsplit(url if "//" in url else f"//{url}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f'"{url}" has an invalid port') from None
    if not parts.hostname:
        raise ValueError(f'"{url}" names no host')
    return parts.hostname, port
