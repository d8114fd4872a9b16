"""A throw-away database server on a prepared physical snapshot, private to the worker.

A physical snapshot is a whole data directory: it cannot be restored beside anything,
so a drill starts the flavor's own server on it (``mariadbd``, or ``mysqld``) and
queries that. The hard thing is keeping that server private and short-lived:

- ``--no-defaults`` first: no ``my.cnf`` of the host (Debian's sets a user and log
  paths). Of the snapshot's own ``backup-my.cnf`` only the InnoDB layout options the
  data needs to open are taken, and only with plain values: the file comes from the
  repository, not from us.
- ``--skip-networking``: the only way in is a unix socket inside the drill's own 0700
  directory, so ``--skip-grant-tables`` lets the drill in without the source's
  passwords and lets nobody else in. Replication, the event scheduler and the binary
  log stay off: the snapshot's events and replica settings must not run.
- It is stopped by SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``, whatever happened;
  the caller removes its directory.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers import database
from workers.engines import ConnectionInfo
from workers.engines.physical import which
from workers.watchdog import Watch
from workflows.errors import IntegrityError, PrecheckFailed
from workflows.resources import Engine

log = logging.getLogger(__name__)

#: The server programs of each flavor, by the names the packages give them: a snapshot
#: opens only in its own flavor's server (MariaDB's data is not MySQL 8's).
SERVER_NAMES = {Engine.MARIADB: ("mariadbd", "mysqld"), Engine.MYSQL: ("mysqld",),
                Engine.PERCONA_XTRADB: ("mysqld",)}
#: Seconds the server may take to accept a login (InnoDB recovery of a large data
#: directory included); the drill's own timeout still bounds it.
READY_TIMEOUT_S = 300.0
#: Seconds between login attempts while it starts.
READY_POLL_S = 0.2
#: Seconds a clean shutdown may take (InnoDB flushes its buffer pool) before SIGKILL.
STOP_TIMEOUT_S = 60.0
#: Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
SOCKET_PATH_MAX_BYTES = 107
#: Bytes read from the end of the server's error log to explain a failed start.
LOG_TAIL_BYTES = 64 * 2**10
#: Options of ``backup-my.cnf`` passed on: what InnoDB needs to open the data as written.
LAYOUT_OPTIONS = frozenset({"innodb_page_size", "innodb_data_file_path",
                            "innodb_undo_tablespaces", "innodb_checksum_algorithm"})
PLAIN_VALUE = re.compile(r"^[A-Za-z0-9:;._-]{1,200}$")


def layout_options(data_dir: Path) -> list[str]:
    """``--innodb-…=value`` for the layout options the snapshot's ``backup-my.cnf`` sets."""
    try:
        text = (data_dir / "backup-my.cnf").read_text(errors="replace")
    except FileNotFoundError:
        return []
    options = []
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        name, value = name.strip().replace("-", "_"), value.strip()
        if sep and name in LAYOUT_OPTIONS and PLAIN_VALUE.match(value):
            options.append(f"--{name.replace('_', '-')}={value}")
    return options


def dies_with_parent() -> list[str]:
    """A prefix that makes the server die with the worker process that started it
    (util-linux's ``setpriv --pdeathsig``; it execs, the pid stays): a worker killed
    with -9 must not leave a server running on its data. Nothing where it is missing."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def server_binary(engine: Engine) -> str:
    """The flavor's server on this host; ``PrecheckFailed`` if there is none, or only the
    other flavor's under the shared name ``mysqld`` (MariaDB installs one)."""
    binary = which(SERVER_NAMES[engine], "database server", engine)
    if engine is not Engine.MARIADB:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
        if "mariadb" in version.lower():
            raise PrecheckFailed(f"{engine.value}: {binary} is MariaDB's server, which cannot "
                                 f"open a {engine.value} snapshot; install the flavor's own "
                                 "mysqld on the worker")
    return binary


def server_args(binary: str, data_dir: Path, work_dir: Path,
                engine: Engine = Engine.MARIADB) -> list[str]:
    # --user only as root (mariadbd refuses root without it); any other uid runs as
    # itself, whether /etc/passwd knows it or not (OpenShift's random uids).
    user = [f"--user={pwd.getpwuid(0).pw_name}"] if os.geteuid() == 0 else []
    # MySQL 8's X Plugin would open a socket of its own outside the private directory.
    mysqlx = [] if engine is Engine.MARIADB else ["--mysqlx=OFF"]
    return [binary, "--no-defaults", f"--datadir={data_dir}",
            f"--socket={work_dir / 'mariadbd.sock'}", "--skip-networking",
            "--skip-grant-tables", *user, *mysqlx,
            f"--pid-file={work_dir / 'mariadbd.pid'}",
            f"--log-error={work_dir / 'mariadbd.err'}", f"--tmpdir={work_dir}",
            "--skip-log-bin", "--skip-slave-start", "--event-scheduler=DISABLED",
            "--innodb-buffer-pool-size=128M", *layout_options(data_dir)]


@contextmanager
def throwaway_server(engine: Engine, data_dir: Path, work_dir: Path,
                     watch: Watch) -> Iterator[ConnectionInfo]:
    """The server started on ``data_dir`` (files of its own in ``work_dir``), ready for
    the ``with`` block; stopped after it. ``watch`` kills it at the drill's timeout."""
    socket = work_dir / "mariadbd.sock"
    if len(os.fsencode(socket)) > SOCKET_PATH_MAX_BYTES:
        raise PrecheckFailed(f"the drill's work directory {work_dir} is too deep for a unix "
                             "socket; set TMPDIR to a shorter path")
    argv = server_args(server_binary(engine), data_dir, work_dir, engine)
    server = subprocess.Popen([*dies_with_parent(), *argv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    log.info("throw-away %s (pid %d) starting on %s", os.path.basename(argv[0]), server.pid,
             data_dir)
    connection = ConnectionInfo(host="localhost", port=0, user="root", password="",
                                socket=str(socket))
    try:
        with watch(server.kill):
            wait_ready(server, connection, work_dir / "mariadbd.err")
            yield connection
    finally:
        stop_server(server)


def wait_ready(server: subprocess.Popen[bytes], connection: ConnectionInfo,
               log_path: Path) -> None:
    """Return once the server takes a login; ``IntegrityError`` with its own words if it
    exits first (the data does not open) or does not answer in ``READY_TIMEOUT_S``."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        code = server.poll()
        if code is not None:
            raise IntegrityError(f"the throw-away server did not start on the prepared data "
                                 f"(exit code {code}): {last_error(log_path)}")
        try:
            with database.connect(connection, what="the throw-away server"):
                return
        except PrecheckFailed:
            if time.monotonic() > deadline:
                raise IntegrityError(f"the throw-away server did not accept a login within "
                                     f"{READY_TIMEOUT_S:g} s: {last_error(log_path)}") from None
        time.sleep(READY_POLL_S)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown), SIGKILL after ``STOP_TIMEOUT_S``; idempotent."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("throw-away server (pid %d) still running %g s after SIGTERM: "
                        "killed", server.pid, STOP_TIMEOUT_S)
            server.kill()
            server.wait()
    log.info("throw-away server (pid %d) stopped (exit code %s)", server.pid,
             server.returncode)


def last_error(log_path: Path) -> str:
    """The server log's last ``[ERROR]`` line (else its last line), without the time."""
    try:
        with log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return "it wrote no log"
    errors = [line for line in lines if "[ERROR]" in line]
    line = (errors or lines or ["its log is empty"])[-1]
    return re.sub(r"^\d{4}-\d\d-\d\d\s+\d?\d:\d\d:\d\d\s+\d+\s+", "", line)
