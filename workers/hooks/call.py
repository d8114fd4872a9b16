"""What a hook is told about the session it runs for (every action gets it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HookCall:
    """What a hook is told about the session it runs for."""

    session: str
    namespace: str
    kind: str          #: BackupSession | RestoreSession
    hook_phase: str    #: preBackup, postBackup, …
    session_phase: str  #: Running (pre hooks), Succeeded or Failed (post hooks)
