"""Free TCP ports on loopback, so that parallel test sessions and the demo never collide.

The one hard thing: a port is only "free" at the moment we look. A `PortPicker` keeps
every port it hands out bound until it closes, so one picker never gives the same port
twice; the short race with other processes between closing and the server binding is
accepted (the server then fails to start with a clear "port in use" error).
"""

import socket
from contextlib import ExitStack
from types import TracebackType

#: The loopback address every test server binds to, and nothing else.
LOOPBACK = "127.0.0.1"
#: Highest valid TCP port number.
MAX_PORT = 65535


def is_free(port: int) -> bool:
    """Whether a server could listen on `port` of loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too: a port in TIME_WAIT is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out distinct free ports; all stay bound until the picker is closed."""

    def __init__(self) -> None:
        self._held = ExitStack()

    def __enter__(self) -> "PortPicker":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held.close()

    def pick(self) -> int:
        """Return a free port, distinct from all others this picker handed out."""
        return self._bind(0)

    def pick_with_partner(self, offset: int) -> int:
        """Return a free port `p` such that `p + offset` is free too (and held)."""
        while True:
            port = self._bind(0)  # a port we cannot use stays held: never offered again
            if port + offset <= MAX_PORT and self._try_bind(port + offset):
                return port

    def _try_bind(self, port: int) -> bool:
        try:
            self._bind(port)
        except OSError:
            return False
        return True

    def _bind(self, port: int) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            sock.close()
            raise
        self._held.enter_context(sock)
        return int(sock.getsockname()[1])


def free_port() -> int:
    """Return one free loopback port."""
    with PortPicker() as picker:
        return picker.pick()
