"""`python -m devstack.servers up|down|status --dir DIR`: the demo's servers on fixed ports.

The demo (and a developer's shell) needs the same servers as the tests, but on ports one
can remember and that stay put across runs, and outliving this command: `up` starts them
(reusing any already running in DIR), writes `DIR/env` to `source` (it puts `stashq`
on PATH too), and exits; `down`
finds them again through their pid files. Fixed ports sit in 13xxx-19xxx, away from the
system's MariaDB (3306) and Redis (6379); SeaweedFS's admin gRPC port is forced to admin
HTTP port + 10000 (see `s3.py`), hence 28646.
"""

import argparse
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

from .mariadb import MariaDBServer
from .process import BinaryMissing, Server, ServerStartError
from .pushgateway import Pushgateway
from .redis import RedisServer
from .s3 import S3Ports, S3Server

MARIADB_PORT = 13306
REDIS_PORT = 16379
PUSHGATEWAY_PORT = 19091
S3_PORTS = S3Ports(
    s3=18333,
    s3_grpc=18334,
    master=19333,
    master_grpc=19334,
    volume=18080,
    volume_grpc=18081,
    filer=18888,
    filer_grpc=18889,
    admin=18646,
)
#: Celery's broker and StashQ's state share the demo Redis, on separate databases.
BROKER_DB = 0
STATE_DB = 1


class DemoServers(NamedTuple):
    """The four demo servers, each with its own data dir under one root."""

    mariadb: MariaDBServer
    redis: RedisServer
    s3: S3Server
    pushgateway: Pushgateway

    @classmethod
    def under(cls, root: Path) -> "DemoServers":
        return cls(
            MariaDBServer(root / "mariadb", MARIADB_PORT),
            RedisServer(root / "redis", REDIS_PORT),
            S3Server(root / "s3", S3_PORTS),
            Pushgateway(root / "pushgateway", PUSHGATEWAY_PORT),
        )

    def in_start_order(self) -> list[Server]:
        return [self.mariadb, self.redis, self.s3, self.pushgateway]


def env_lines(root: Path) -> list[str]:
    """Shell `export` lines that point StashQ and the demo at the servers."""
    mariadb, redis, s3, pushgateway = DemoServers.under(root)
    values = {
        "STASHQ_BROKER_URL": redis.url_for(BROKER_DB),
        "STASHQ_REDIS_URL": redis.url_for(STATE_DB),
        "STASHQ_PUSHGATEWAY_URL": pushgateway.url,
        "DEMO_MYSQL_HOST": mariadb.host,
        "DEMO_MYSQL_PORT": str(mariadb.port),
        "DEMO_MYSQL_USER": mariadb.user,
        "DEMO_MYSQL_PASSWORD": mariadb.password,
        "DEMO_S3_ENDPOINT": s3.endpoint,
        "DEMO_S3_REGION": s3.region,
        "DEMO_S3_ACCESS_KEY": s3.access_key,
        "DEMO_S3_SECRET_KEY": s3.secret_key,
    }
    # The Python running this is the virtualenv's: its bin/ holds `stashq`.
    path = f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"'
    return [path, *(f"export {name}={shlex.quote(value)}" for name, value in values.items())]


def write_env(root: Path) -> Path:
    """Write `root/env`, the `export` lines of `env_lines`; return its path."""
    env_path = root / "env"
    env_path.write_text("\n".join(env_lines(root)) + "\n")
    return env_path


def up(root: Path) -> int:
    """Start all (reusing those already running), then write `root/env`."""
    for server in DemoServers.under(root).in_start_order():
        verb = "already running" if server.running_pid() is not None else "started"
        server.start()
        print(f"{server.name}: {verb}, pid {server.running_pid()}", flush=True)
    env_path = write_env(root)
    print(f"wrote {env_path}; run: source {env_path}")
    return 0


def down(root: Path) -> int:
    """Stop all, last started first."""
    for server in reversed(DemoServers.under(root).in_start_order()):
        server.stop()
        print(f"{server.name}: stopped")
    return 0


def status(root: Path) -> int:
    """Print each server's state; exit status 0 only if all are ready."""
    all_ready = True
    for server in DemoServers.under(root).in_start_order():
        pid = server.running_pid()
        ready = pid is not None and server.is_ready()
        all_ready = all_ready and ready
        state = "stopped" if pid is None else f"pid {pid}, {'ready' if ready else 'NOT ready'}"
        print(f"{server.name}: {state}")
    return 0 if all_ready else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.servers", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, required=True, help="where the servers keep data")
    args = parser.parse_args(argv)
    root: Path = args.dir.absolute()
    try:
        return {"up": up, "down": down, "status": status}[args.command](root)
    except (BinaryMissing, ServerStartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
