"""One loopback server as a child process: spawn it, find it again, wait until ready, stop it.

Why: tests and the demo run real servers that must survive a Ctrl-C in pytest (they run
in their own session) and, for the demo, outlive the `up` command itself. So a server is
found again through the pid file in its own directory, never through a handle.

The one hard thing is trusting that pid file: pids are reused. A pid counts as our
server only if that process is alive (not a zombie) and its working directory is the
server's directory or below it — each server is started there, and MariaDB and Redis
only ever chdir further down. Linux only (reads /proc).
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from . import ports

#: Pause between two readiness probes.
READY_POLL_S = 0.1
#: How long to wait for a process to die after SIGKILL.
KILL_WAIT_S = 5.0
#: How many lines of a server's log go into an error message.
LOG_TAIL_LINES = 30
#: Where Debian keeps daemons, often missing from a non-root PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class BinaryMissing(RuntimeError):
    """A server's program is not installed (tests skip locally, fail in CI)."""


class ServerStartError(RuntimeError):
    """A server did not become ready; the message ends with the tail of its log."""


class Server(Protocol):
    """What the fixtures and the demo command need from every server."""

    name: str
    data_dir: Path

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_ready(self) -> bool: ...

    def running_pid(self) -> int | None: ...


def find_binary(name: str) -> str:
    """Return the path of program `name`: on PATH, beside this Python (venv), or in sbin."""
    search = [os.environ.get("PATH", ""), str(Path(sys.executable).parent), *SBIN_DIRS]
    found = shutil.which(name, path=os.pathsep.join(search))
    if found is None:
        raise BinaryMissing(f"{name} is not installed (run scripts/install.sh)")
    return found


class ServerProcess:
    """The process of one server, recorded in `<data_dir>/server.pid`, logging to `server.log`."""

    def __init__(self, name: str, data_dir: Path, *, stop_timeout_s: float) -> None:
        self.name = name
        self.data_dir = data_dir.absolute()
        self.stop_timeout_s = stop_timeout_s
        self.pid_path = self.data_dir / "server.pid"
        self.log_path = self.data_dir / "server.log"
        self._child: subprocess.Popen[bytes] | None = None
        self._log_start_bytes = 0

    def ensure_running(
        self,
        command: Callable[[], list[str]],
        ready: Callable[[], bool],
        *,
        ports_used: Sequence[int],
        ready_timeout_s: float,
    ) -> None:
        """Start the server unless ours already runs, then wait until `ready()` holds."""
        if self.running_pid() is None:
            self._check_ports_free(ports_used)
            self.spawn(command())
        self.wait_ready(ready, ready_timeout_s)

    def running_pid(self) -> int | None:
        """The pid of our running server, or None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) and self._owns(pid) else None

    def run_to_log(self, argv: list[str], *, timeout_s: float) -> None:
        """Run a preparation command to completion, its output appended to the log."""
        self._mark_log(argv)
        with self.log_path.open("ab") as log:
            done = subprocess.run(
                argv,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        if done.returncode != 0:
            raise self._error(f"{argv[0]} exited with status {done.returncode}")

    def spawn(self, argv: list[str]) -> None:
        """Start the server in its own session (a Ctrl-C in pytest does not reach it)."""
        self._mark_log(argv)
        with self.log_path.open("ab") as log:
            self._child = subprocess.Popen(
                argv,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{self._child.pid}\n")

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `ready()` until it holds; on exit or timeout stop the server and raise."""
        deadline_s = time.monotonic() + timeout_s
        while not ready():
            if self.running_pid() is None:
                raise self._error(f"exited while starting{self._exit_status()}")
            if time.monotonic() > deadline_s:
                self.stop()
                raise self._error(f"not ready after {timeout_s:.0f} s")
            time.sleep(READY_POLL_S)

    def stop(self) -> None:
        """SIGTERM, wait for the pid to exit, SIGKILL after `stop_timeout_s`. Idempotent."""
        pid = self.running_pid()
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            if not self._wait_exit(pid, self.stop_timeout_s):
                _signal_group(pid, signal.SIGKILL)
                self._wait_exit(pid, KILL_WAIT_S)
        self.pid_path.unlink(missing_ok=True)
        self._child = None

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would end it (fault tests). Idempotent."""
        pid = self.running_pid()
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            self._wait_exit(pid, KILL_WAIT_S)
        self.pid_path.unlink(missing_ok=True)
        self._child = None

    def log_tail(self) -> str:
        """The last lines the server logged since it was last started."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start_bytes)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])

    def _owns(self, pid: int) -> bool:
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return False
        root = self.data_dir.resolve()
        return cwd == root or root in cwd.parents

    def _check_ports_free(self, ports_used: Sequence[int]) -> None:
        taken = [port for port in ports_used if not ports.is_free(port)]
        if taken:
            raise ServerStartError(
                f"{self.name}: port(s) {taken} on {ports.LOOPBACK} are used by another "
                f"process, not by the server recorded in {self.pid_path}"
            )

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        if self._child is not None and self._child.pid == pid:
            try:
                self._child.wait(timeout_s)  # our child: reap it, or it stays a zombie
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline_s = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline_s:
                return False
            time.sleep(READY_POLL_S)
        return True

    def _exit_status(self) -> str:
        code = None if self._child is None else self._child.poll()
        return "" if code is None else f" (exit status {code})"

    def _mark_log(self, argv: list[str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start_bytes = log.tell()
            log.write(f"--- {time.strftime('%F %T')} {' '.join(argv)}\n".encode())

    def _error(self, what: str) -> ServerStartError:
        return ServerStartError(
            f"{self.name} {what}; last lines of {self.log_path}:\n{self.log_tail()}"
        )


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited; it only waits for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    """Signal the server's whole session: it was started as the leader of its own group."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:  # not a group leader after all: signal the process alone
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
