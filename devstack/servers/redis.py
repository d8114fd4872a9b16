"""A throw-away Redis on loopback: the Celery broker and the state store in tests and the demo.

Nothing is persisted (`--save ""`, no AOF): a test session starts empty. A `persistent`
server (for tests that restart it, as production restarts its Redis) writes an
append-only file synced on every write, so a restart loses nothing. It runs in the
foreground as our child (`--daemonize no`) so that the pid we record is the server's.
Redis renames its process title, so it is recognised by its working directory, which
`--dir` sets to the data dir.
"""

from pathlib import Path

import redis

from . import ports
from .process import ServerProcess, find_binary

#: Redis is ready in milliseconds; a slow machine still gets slack.
READY_TIMEOUT_S = 20.0
#: Shutdown without persistence is instant.
STOP_TIMEOUT_S = 10.0
#: Per readiness probe.
CONNECT_TIMEOUT_S = 1.0


class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, working in `data_dir`."""

    name = "redis"

    def __init__(self, data_dir: Path, port: int, *, persistent: bool = False) -> None:
        self.data_dir = data_dir.absolute()
        self.host = ports.LOOPBACK
        self.port = port
        self.persistent = persistent
        self._process = ServerProcess(self.name, self.data_dir, stop_timeout_s=STOP_TIMEOUT_S)

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """The URL of database `db` (0..15)."""
        return f"redis://{self.host}:{self.port}/{db}"

    def start(self) -> None:
        """Start the server, or reuse ours if it already runs; wait until it answers PING."""
        self._process.ensure_running(
            self._command, self.is_ready, ports_used=[self.port], ready_timeout_s=READY_TIMEOUT_S
        )

    def stop(self) -> None:
        self._process.stop()

    def running_pid(self) -> int | None:
        return self._process.running_pid()

    def is_ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT_S)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _command(self) -> list[str]:
        return [
            find_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
        ]
