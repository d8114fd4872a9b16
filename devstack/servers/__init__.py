"""Real servers on loopback for tests and the demo: MariaDB, Redis, S3 (SeaweedFS), Pushgateway.

Each server has its own data dir and ports, is started as a child process in its own
session, and is found again through `<data_dir>/server.pid`, so `start()` reuses a
server that already runs there and `stop()` works from another process (the demo's
`python -m devstack.servers down`).
"""

from .mariadb import MariaDBServer
from .ports import free_port
from .process import BinaryMissing, Server, ServerStartError
from .pushgateway import Pushgateway
from .redis import RedisServer
from .s3 import S3Ports, S3Server

__all__ = [
    "BinaryMissing",
    "MariaDBServer",
    "Pushgateway",
    "RedisServer",
    "S3Ports",
    "S3Server",
    "Server",
    "ServerStartError",
    "free_port",
]
