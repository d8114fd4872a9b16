"""A throw-away MariaDB server on loopback, for dump and restore tests against the real thing.

The one hard thing: the Debian packages ship a /etc/mysql/my.cnf that sets `user=mysql`
and a log file under /var/log, which breaks a private server. Both `mariadb-install-db`
and `mariadbd` therefore get `--no-defaults` (it must come first on the command line).
The system tables are created with `root` authenticated by an empty password (not by
unix socket), so clients log in over TCP from 127.0.0.1 as `root` with no password.
"""

import getpass
import shutil
from pathlib import Path

import pymysql
import pymysql.connections

from . import ports
from .process import ServerProcess, find_binary

#: MariaDB can take a while on a cold disk (InnoDB creates its files on first start).
READY_TIMEOUT_S = 60.0
#: A clean InnoDB shutdown flushes the buffer pool; give it time before SIGKILL.
STOP_TIMEOUT_S = 30.0
#: `mariadb-install-db` takes about 0.5 s here.
INSTALL_TIMEOUT_S = 120.0
#: Per readiness probe.
CONNECT_TIMEOUT_S = 2
#: Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
UNIX_SOCKET_PATH_MAX_BYTES = 107


#: Options of a server that writes a binary log as point-in-time recovery needs it (row
#: format), its files named ``mysql-bin.000001`` and on whatever the host is called.
BINLOG_OPTIONS = ("--log-bin=mysql-bin", "--binlog-format=ROW")


class MariaDBServer:
    """`mariadbd` with its own datadir under `data_dir`, on 127.0.0.1:`port`; with
    ``server_id``, it writes a row-format binary log as that server id."""

    name = "mariadb"
    user = "root"
    password = ""

    def __init__(self, data_dir: Path, port: int, *, server_id: int | None = None,
                 options: tuple[str, ...] = ()) -> None:
        self.server_id = server_id
        self.options = options
        self.data_dir = data_dir.absolute()
        self.host = ports.LOOPBACK
        self.port = port
        self.socket = self.data_dir / "mariadbd.sock"
        self._datadir = self.data_dir / "data"
        self._process = ServerProcess(self.name, self.data_dir, stop_timeout_s=STOP_TIMEOUT_S)
        if len(bytes(self.socket)) > UNIX_SOCKET_PATH_MAX_BYTES:
            raise ValueError(f"unix socket path too long for the kernel: {self.socket}")

    def start(self) -> None:
        """Create the system tables once, start the server (or reuse ours), wait for a login."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._process.running_pid() is None:
            self._install()
        self._process.ensure_running(
            self._command, self.is_ready, ports_used=[self.port], ready_timeout_s=READY_TIMEOUT_S
        )

    def stop(self) -> None:
        self._process.stop()

    def kill(self) -> None:
        """SIGKILL (fault tests; InnoDB recovers on the next start)."""
        self._process.kill()

    def running_pid(self) -> int | None:
        return self._process.running_pid()

    def is_ready(self) -> bool:
        try:
            self.connect(connect_timeout_s=CONNECT_TIMEOUT_S).close()
        except pymysql.MySQLError:
            return False
        return True

    def connect(
        self, database: str | None = None, *, connect_timeout_s: int = 10
    ) -> pymysql.connections.Connection:
        """A new TCP connection as root, in autocommit mode (call `begin()` for a transaction)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=connect_timeout_s,
        )

    def _install(self) -> None:
        """Create the system tables, unless a previous install got to the end."""
        marker = self.data_dir / "installed"
        if marker.exists():
            return
        shutil.rmtree(self._datadir, ignore_errors=True)  # a half-done install
        self._process.run_to_log(
            [
                find_binary("mariadb-install-db"),
                "--no-defaults",
                f"--user={getpass.getuser()}",
                f"--datadir={self._datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            timeout_s=INSTALL_TIMEOUT_S,
        )
        marker.touch()

    def _command(self) -> list[str]:
        return [
            find_binary("mariadbd"),
            "--no-defaults",
            f"--datadir={self._datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            f"--bind-address={self.host}",
            f"--user={getpass.getuser()}",
            f"--pid-file={self.data_dir / 'mariadbd.pid'}",
            # The same file as our stdout log: one place to read when it fails.
            f"--log-error={self._process.log_path}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M",
            "--max-allowed-packet=256M",
            *(() if self.server_id is None
              else (*BINLOG_OPTIONS, f"--server-id={self.server_id}")),
            *self.options,
        ]

    def create_user(self, user: str, password: str, privileges: str) -> None:
        """A user that logs in over TCP from anywhere, with ``privileges`` on ``*.*``."""
        with self.connect() as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE OR REPLACE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
            cursor.execute(f"GRANT {privileges} ON *.* TO '{user}'@'%'")
