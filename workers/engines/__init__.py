"""Database engine adapters: the dump/restore command lines of each flavor.

``engine_for`` is the one place that chooses an adapter by flavor.
"""

from __future__ import annotations

from workers.engines.base import ConnectionInfo, EngineAdapter, ServerInfo
from workers.engines.mysql import MariaDBEngine, MySQLEngine, PerconaEngine
from workflows.resources import Engine

__all__ = ["ConnectionInfo", "EngineAdapter", "ServerInfo", "engine_for"]


def engine_for(engine: Engine) -> EngineAdapter:
    if engine is Engine.MARIADB:
        return MariaDBEngine()
    if engine is Engine.PERCONA_XTRADB:
        return PerconaEngine()
    return MySQLEngine()
