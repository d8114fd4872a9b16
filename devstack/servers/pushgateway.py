"""A throw-away Prometheus Pushgateway on loopback, where workers push backup metrics.

The one hard thing: Debian's build persists to /var/lib/prometheus/pushgateway.data by
default, so a fresh start would show groups pushed by earlier runs (or by the system
service). `--persistence.file=` (empty) turns persistence off: every start is empty.
"""

import urllib.error
import urllib.request
from pathlib import Path

from . import ports
from .process import ServerProcess, find_binary

#: The Pushgateway is ready at once; a slow machine still gets slack.
READY_TIMEOUT_S = 20.0
#: Shutdown without persistence is instant.
STOP_TIMEOUT_S = 10.0
#: Per HTTP request.
HTTP_TIMEOUT_S = 5.0


class Pushgateway:
    """`prometheus-pushgateway` on 127.0.0.1:`port`, working in `data_dir`."""

    name = "pushgateway"

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.url = f"http://{ports.LOOPBACK}:{port}"
        self._process = ServerProcess(self.name, self.data_dir, stop_timeout_s=STOP_TIMEOUT_S)

    def start(self) -> None:
        """Start the server, or reuse ours if it already runs; wait for `/-/ready`."""
        self._process.ensure_running(
            self._command, self.is_ready, ports_used=[self.port], ready_timeout_s=READY_TIMEOUT_S
        )

    def stop(self) -> None:
        self._process.stop()

    def running_pid(self) -> int | None:
        return self._process.running_pid()

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=HTTP_TIMEOUT_S) as r:
                return int(r.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def metrics_text(self) -> str:
        """Everything the gateway exposes at `/metrics`, in the Prometheus text format."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=HTTP_TIMEOUT_S) as r:
            body: bytes = r.read()
        return body.decode()

    def _command(self) -> list[str]:
        return [
            find_binary("prometheus-pushgateway"),
            f"--web.listen-address={ports.LOOPBACK}:{self.port}",
            "--persistence.file=",
        ]
