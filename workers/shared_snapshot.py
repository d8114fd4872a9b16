"""One consistent snapshot shared by several dump clients, the way mydumper takes it.

InnoDB gives each transaction the snapshot of the moment it starts, so dump clients
started one after another would each see a different moment. Started while commits
are blocked server-wide, they all see the same one: a coordinator connection blocks
commits (``database.block_commits``), the clients start, and the block is lifted as
soon as every client's transaction exists.

The hard part is "every client's": the clients are separate processes (``mariadb-dump
--single-transaction``), so the server's view of them, a transaction in
``information_schema.INNODB_TRX``, is matched to each process by the local TCP port of
its connection, read from /proc. A client that exits before it is seen did all its
reading inside the window, which is as consistent. A proxy or NAT between worker and
server hides the ports: the window then times out and the dump fails, naming the
cause, rather than lift the block early and take an inconsistent snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from workers import database
from workers.engines import ConnectionInfo
from workers.process import ClientProcess
from workflows.errors import DumpFailed
from workflows.gtids import Coordinates

log = logging.getLogger(__name__)

#: Seconds to wait for the commit block (FTWRL waits for running queries): writers wait
#: behind it, so give up early rather than stall the application.
BLOCK_WAIT_S = 30
#: Seconds the clients get to open their transactions while commits are blocked. They
#: take milliseconds; a client that is not seen by then is hidden (a proxy) or stuck.
CONFIRM_TIMEOUT_S = 10.0
#: Seconds between two looks at the server. InnoDB refreshes information_schema.INNODB_TRX
#: only when nobody has read it for 0.1 s: polled faster, it would never show the clients.
TRX_CACHE_IDLE_S = 0.11
#: Seconds between two looks at /proc while waiting for the clients to connect.
CONNECT_POLL_S = 0.002
#: Seconds from a client's connection to its START TRANSACTION (a few SET statements).
SETTLE_S = 0.01


class SnapshotWindow:
    """The moment commits are blocked: clients started now share one snapshot."""

    def __init__(self, open_ports: Callable[[], set[int]],
                 objects: Callable[[], set[tuple[str, str]]], what: str,
                 coordinates: Callable[[], Coordinates | None] = lambda: None) -> None:
        self._open_ports, self.objects, self._what = open_ports, objects, what
        #: The binlog coordinates of this moment (commits are blocked: one for all streams).
        self.coordinates = coordinates

    def confirm(self, clients: Sequence[ClientProcess],
                timeout_s: float = CONFIRM_TIMEOUT_S) -> None:
        """Return once every client has its transaction open (or has finished cleanly);
        raise ``DumpFailed`` if one failed or is not seen within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        pending = list(clients)
        while pending:
            _connected(pending, deadline)  # only then is asking the server worth it
            held = self._open_ports()
            pending = [c for c in pending if not (client_ports(c.pid) & held or _done(c))]
            if pending and time.monotonic() > deadline:
                raise DumpFailed(
                    f"{self._what}: the server shows no open transaction for {pending[0].name} "
                    f"(pid {pending[0].pid}) after {timeout_s:g} s of blocked commits; a proxy "
                    "or NAT between worker and server hides which connection is whose: "
                    "connect directly, or set parallel to 1")
            if pending:
                time.sleep(TRX_CACHE_IDLE_S)


def _connected(clients: Sequence[ClientProcess], deadline: float) -> None:
    """Wait until every client holds a TCP socket (or has exited), then a moment more."""
    while time.monotonic() < deadline:
        if all(client_ports(c.pid) or c.poll() is not None for c in clients):
            time.sleep(SETTLE_S)
            return
        time.sleep(CONNECT_POLL_S)


def _done(client: ClientProcess) -> bool:
    code = client.poll()
    if code is not None and code != 0:
        client.finish()  # raises DumpFailed with the client's own message
    return code == 0


@contextlib.contextmanager
def commits_blocked(info: ConnectionInfo, databases: Sequence[str], *,
                    what: str) -> Iterator[SnapshotWindow]:
    """Block commits on the server for the duration of the ``with`` block; the window
    also lists the tables and views of ``databases`` (DDL waits too, so they hold)."""
    with database.connect(info, what=what) as connection:
        release = database.block_commits(connection, what=what, wait_s=BLOCK_WAIT_S)
        started = time.monotonic()
        try:
            yield SnapshotWindow(lambda: database.snapshot_ports(connection, info.user),
                                 lambda: database.object_names(connection, databases), what,
                                 lambda: database.binlog_coordinates(connection, what=what))
        finally:
            try:
                database.unblock_commits(connection, release)
            except Exception as e:  # closing the connection lifts the block all the same
                log.warning("%s failed (%s); closing the connection instead", release, e)
            log.info("commits were blocked for %.3f s (until %s)", time.monotonic() - started,
                     release)


def client_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets process ``pid`` holds (Linux /proc); empty once it
    has exited or before it has connected."""
    try:
        links = [_readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    inodes = {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in lines:
            fields = line.split()  # sl local_address rem_address st ... uid timeout inode
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the fd closed meanwhile
        return ""
