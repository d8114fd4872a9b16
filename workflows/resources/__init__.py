"""Typed, immutable models of every kind StashQ reads (one module per family)."""

from workflows.resources.appbinding import AppBinding, Engine
from workflows.resources.backup import BackupConfiguration, BackupSession
from workflows.resources.base import Resource
from workflows.resources.drill import RestoreDrill
from workflows.resources.hooks import HookTemplate
from workflows.resources.repository import Repository
from workflows.resources.restore import RestoreSession
from workflows.resources.secret import Secret
from workflows.resources.task import Function, Task

__all__ = [
    "AppBinding", "BackupConfiguration", "BackupSession", "Engine", "Function", "HookTemplate",
    "Repository", "Resource", "RestoreDrill", "RestoreSession", "Secret", "Task",
]
