"""Child processes at either end of a stream: the dump client and the SQL client.

A dump counts as good only if the client exited 0 and printed no error line
(Stash issue #1064 reported success while the tool had errors). stderr is drained by
a thread into a bounded buffer so a chatty client can never block on a full pipe.
"""

from __future__ import annotations

import collections
import functools
import io
import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, cast

from workers.streaming import enlarge_pipe, read_chunks
from workflows.errors import DumpFailed

log = logging.getLogger(__name__)

#: stderr lines kept for the failure message.
STDERR_LINES = 40
#: Seconds to wait for a client to exit after its stream ended.
EXIT_TIMEOUT_S = 120
#: stdio buffer of a producing client's stdout. glibc buffers a pipe in 4 KiB (its
#: st_blksize), so a dump arrives as 4 KiB writes, each a wake-up of our reader thread;
#: with 1 MiB (coreutils' stdbuf, where the program uses stdio) a 256 MiB dump cost
#: ~30 % less CPU in the worker and ~25 % less in mariadb-dump (measured).
STDOUT_BUFFER = "1M"
ERROR_LINE = re.compile(r"error|couldn't|can't|failed|denied|unknown|lost connection",
                        re.IGNORECASE)


def buffered_stdout(argv: Sequence[str]) -> list[str]:
    """``argv`` run with a large stdout buffer (``stdbuf`` execs it: same pid), or as is
    where coreutils' stdbuf is missing or does not work."""
    stdbuf = _working_stdbuf()
    return [stdbuf, "-o", STDOUT_BUFFER, *argv] if stdbuf else list(argv)


@functools.cache
def _working_stdbuf() -> str | None:
    """stdbuf's path if it runs a program here (it needs its preload library), once per
    process: a broken one would fail every dump with its own message, not the client's."""
    stdbuf = shutil.which("stdbuf")
    if stdbuf is None:
        return None
    try:
        subprocess.run([stdbuf, "-o", STDOUT_BUFFER, "true"], check=True, timeout=10,
                       stdin=subprocess.DEVNULL, capture_output=True)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("not buffering dump output: %s does not work here (%s)", stdbuf, e)
        return None
    return stdbuf


class ClientProcess:
    """A client started with a closed or piped stdin and stderr collected."""

    def __init__(self, argv: Sequence[str], *, stdin_pipe: bool = False,
                 stdin_from: IO[bytes] | None = None, stdout_pipe: bool | None = None) -> None:
        """``stdin_pipe``: we write its input (``feed``); ``stdin_from``: it reads another
        client's output. Its stdout is ours to read (``chunks``) unless it is fed, or as
        ``stdout_pipe`` says (a client in the middle of a pipeline)."""
        self.name = os.path.basename(argv[0])
        fed = stdin_pipe or stdin_from is not None
        piped = not fed if stdout_pipe is None else stdout_pipe
        stdin: IO[bytes] | int = stdin_from if stdin_from is not None else (
            subprocess.PIPE if stdin_pipe else subprocess.DEVNULL)
        self._proc = subprocess.Popen(
            buffered_stdout(argv) if piped else list(argv), stdin=stdin,
            stdout=subprocess.PIPE if piped else subprocess.DEVNULL,
            stderr=subprocess.PIPE, bufsize=0, close_fds=True)
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True,
                                       name=f"stashq-{self.name}-stderr")
        self._drain.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stdout(self) -> IO[bytes]:
        """Its output, for the next client of a pipeline (``stdin_from``)."""
        assert self._proc.stdout is not None
        return self._proc.stdout

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_lines.append(line)
                self._log_line(line)

    def _log_line(self, line: str) -> None:
        """Log one stderr line: a SQL client says little, and only when something is off."""
        log.warning("%s: %s", self.name, line)

    def poll(self) -> int | None:
        """The exit code, or None while the client runs (never blocks)."""
        return self._proc.poll()

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr_lines if ERROR_LINE.search(line)]

    def finish(self) -> None:
        """Wait for exit; raise ``DumpFailed`` on a non-zero exit or an error line."""
        code = self._proc.wait(timeout=EXIT_TIMEOUT_S)
        self._drain.join(timeout=5)
        errors = self.error_lines()
        if code != 0 or errors:
            detail = (errors or list(self.stderr_lines) or ["no message"])[-1]
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise DumpFailed(f"{self.name} {how}: {detail}")

    def stop(self) -> None:
        """Kill the client if it is still running (idempotent)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._drain.join(timeout=5)


    def chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """stdout in ``chunk_bytes`` chunks, then the exit check (which may raise)."""
        assert self._proc.stdout is not None
        enlarge_pipe(self._proc.stdout)
        raw = cast(io.RawIOBase, self._proc.stdout)  # bufsize=0: an unbuffered FileIO
        reader = io.BufferedReader(raw, buffer_size=chunk_bytes)
        yield from read_chunks(reader, chunk_bytes)
        self.finish()

    def feed(self, chunks: Iterable[bytes]) -> None:
        """Write ``chunks`` to stdin; a client that dies early is reported with its error."""
        stdin = self._proc.stdin
        assert stdin is not None
        enlarge_pipe(stdin)  # the client reads on while we decompress the next chunk
        try:
            for chunk in chunks:
                stdin.write(chunk)
            stdin.close()
        except BrokenPipeError:
            self.finish()  # raises with the client's own message
            raise DumpFailed(f"{self.name} closed its input early") from None
        self.finish()
