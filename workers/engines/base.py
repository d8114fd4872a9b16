"""What an engine adapter is, and how credentials reach its clients.

Credentials go to the dump and restore clients through a 0600 option file named by
``--defaults-file`` (first argument), never through argv or the environment, where
``ps`` and ``/proc/<pid>/environ`` would show them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from workflows.resources import Engine


@dataclass(frozen=True)
class ConnectionInfo:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    ca_bundle: str | None = field(default=None, repr=False)
    #: A unix socket path instead of host and port (a drill's throw-away server).
    socket: str | None = None

    @property
    def address(self) -> str:
        return self.socket or f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.address}"


@dataclass(frozen=True)
class ServerInfo:
    """What pre-check learned about the server."""

    flavor: Engine
    version: str          #: e.g. "10.11.19" (numeric part only)
    version_string: str   #: as the server reports it, e.g. "10.11.19-MariaDB-0+deb12u1"


class EngineAdapter(Protocol):
    engine: ClassVar[Engine]

    def dump_client(self) -> str:
        """Path of the dump client binary; ``PrecheckFailed`` if none is installed."""

    def restore_client(self) -> str:
        """Path of the SQL client used for restores; ``PrecheckFailed`` if missing."""

    def dump_args(self, defaults_file: Path, databases: Sequence[str],
                  extra: Sequence[str]) -> list[str]:
        """Full argv of a consistent logical dump of ``databases`` to stdout."""

    def coordinates_options(self) -> tuple[str, ...]:
        """Dump options that make the client state its snapshot's binlog coordinates
        (for a server that writes a binlog); empty if its dumps cannot say them."""

    def restore_args(self, defaults_file: Path, database: str | None,
                     extra: Sequence[str]) -> list[str]:
        """Full argv of the client that reads SQL on stdin (into ``database`` if given)."""

    def accepts(self, server: ServerInfo) -> bool:
        """Whether this adapter's clients can work with that server flavor."""


def _quote(value: str) -> str:
    """Quote an option-file value; the clients unescape \\\\ and \\" inside quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_defaults(conn: ConnectionInfo, ca_path: Path | None) -> str:
    lines = ["[client]", f"user={_quote(conn.user)}", f"password={_quote(conn.password)}"]
    lines += ([f"socket={_quote(conn.socket)}", "protocol=SOCKET"] if conn.socket else
              [f"host={_quote(conn.host)}", f"port={conn.port}", "protocol=TCP"])
    if ca_path is not None:
        lines += [f"ssl-ca={_quote(str(ca_path))}", "ssl-verify-server-cert"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def defaults_file(conn: ConnectionInfo) -> Iterator[Path]:
    """A 0600 option file (and CA file) that exists only in this process's memory.

    The files are anonymous memory files (``memfd_create``), named to the clients as
    ``/proc/<our pid>/fd/<n>``: readable by processes of our user only, re-readable
    (each open starts at the beginning), and gone the moment we close them or die. A
    worker killed with ``kill -9`` mid-dump therefore leaves no password on any disk,
    which a temporary directory could not promise (nothing runs to remove it).
    """
    with contextlib.ExitStack() as stack:
        ca_path = None
        if conn.ca_bundle:
            ca_path = stack.enter_context(_memory_file("ca.pem", conn.ca_bundle))
        yield stack.enter_context(_memory_file("client.cnf", render_defaults(conn, ca_path)))


@contextlib.contextmanager
def _memory_file(name: str, text: str) -> Iterator[Path]:
    fd = os.memfd_create(f"stashq-{name}", os.MFD_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)  # memfds start 0777; the clients ignore world-writable files
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        yield Path(f"/proc/{os.getpid()}/fd/{fd}")
    finally:
        os.close(fd)
