"""The Repository object (``repository.py``) and the format code only it uses: byte
pipelines of formats 1 and 2 (``streams``), ``config.json`` and the cipher
(``config``), manifests, prune and check; format 3, deduplicating (``format3`` and the
modules it uses: ``chunks``, ``packs``, ``index``, ``dedup``, ``dedup_prune``,
``dedup_check``). Nothing outside this package imports a storage backend or the cipher
(an import-linter contract in pyproject.toml says so)."""

from workers.repository.check import CheckReport
from workers.repository.repository import Repository, open_repository
from workers.repository.streams import Report

__all__ = ["CheckReport", "Report", "Repository", "open_repository"]
