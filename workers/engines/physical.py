"""Physical backups: the tools that copy, unpack and prepare a data directory.

MariaDB ships ``mariadb-backup`` and ``mbstream``; Percona ships ``xtrabackup`` and
``xbstream``; both write the same stream format. ``physical_tools`` is the one place
that picks them by flavor.

The one hard thing is telling success from failure. mariadb-backup prints a line per
file copied, and a file such as ``sys/statements_with_errors_or_warnings.frm`` would
trip the logical dump's error-line check; so a physical tool succeeds when it exits 0
*and* printed its own completion line (``completed OK!``), and only then.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.process import EXIT_TIMEOUT_S, ClientProcess
from workers.watchdog import Watch, unwatched
from workflows.errors import DumpFailed, PrecheckFailed
from workflows.resources import Engine

log = logging.getLogger(__name__)

#: The last line mariadb-backup and xtrabackup print when they succeeded.
COMPLETION_LINE = "completed OK!"
#: Lines worth showing a person when a tool fails (the rest is per-file chatter).
PROBLEM_LINE = re.compile(r"error|failed|cannot|can't|denied|fatal|unknown option",
                          re.IGNORECASE)
#: ``--prepare`` prints the Galera position the prepared data stands at.
WSREP_POSITION = re.compile(r"Recovered WSREP position: ([0-9a-f-]{36}):(-?\d+)")
#: The stream of a physical snapshot that holds the data directory, as the tool streamed it.
DATA_STREAM = "datadir.xbstream.zst"
#: Where daemons and some tools live, often missing from a worker's PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class PhysicalTools:
    """The programs one flavor uses for physical backups, by candidate names."""

    engine: Engine
    backup_names: tuple[str, ...]
    stream_names: tuple[str, ...]
    sst_method: str   #: the SST script a donor runs for this flavor (wsrep_sst_<method>)

    def backup(self) -> str:
        return which(self.backup_names, "physical backup", self.engine)

    def stream(self) -> str:
        return which(self.stream_names, "xbstream", self.engine)


def physical_tools(engine: Engine) -> PhysicalTools:
    if engine is Engine.MARIADB:
        return PhysicalTools(engine, ("mariadb-backup", "mariabackup"), ("mbstream",),
                             "mariabackup")
    if engine is Engine.PERCONA_XTRADB:
        return PhysicalTools(engine, ("xtrabackup",), ("xbstream",), "xtrabackup-v2")
    raise PrecheckFailed(f"{engine.value}: physical backups need mariadb-backup (MariaDB) or "
                         "xtrabackup (Percona XtraDB); use a logical backup Task")


def which(names: Sequence[str], role: str, engine: Engine) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    for name in names:
        path = shutil.which(name, path=search)
        if path:
            return path
    raise PrecheckFailed(f"{engine.value}: no {role} tool installed "
                         f"(looked for {', '.join(names)} on PATH)")


class ToolProcess(ClientProcess):
    """A physical backup tool streaming to stdout: judged by exit code + completion line."""

    def _log_line(self, line: str) -> None:
        """The tool narrates every file it copies: only problem lines are warnings."""
        log.log(logging.WARNING if PROBLEM_LINE.search(line) else logging.DEBUG,
                "%s: %s", self.name, line)

    def finish(self) -> None:
        code = self._proc.wait(timeout=EXIT_TIMEOUT_S)
        self._drain.join(timeout=5)
        lines = list(self.stderr_lines)
        if code != 0 or not any(COMPLETION_LINE in line for line in lines[-3:]):
            raise DumpFailed(f"{self.name} {_how(code)}: {problem(lines)}")


def backup_args(tool: str, defaults_file: Path, work_dir: Path, extra: Sequence[str]) -> list[str]:
    """A full physical backup of the server in ``defaults_file``, as xbstream on stdout.

    The tool must run beside the server: it reads the data directory's files itself.
    """
    return [tool, f"--defaults-file={defaults_file}", "--backup", "--stream=xbstream",
            f"--target-dir={work_dir}", *extra]


def unpack(tool: str, chunks: Iterable[bytes], directory: Path,
           watch: Watch = unwatched) -> None:
    """``chunks`` of an xbstream unpacked into ``directory`` by ``tool`` (``mbstream -x``)."""
    client = ClientProcess([tool, "-x", "-C", str(directory)], stdin_pipe=True)
    try:  # a corrupt stream raises inside feed, before mbstream's input is closed
        with watch(client.stop):
            client.feed(chunks)
    finally:
        client.stop()


def prepare(tool: str, data_dir: Path, extra: Sequence[str],
            watch: Watch = unwatched) -> tuple[str, int] | None:
    """Make an unpacked backup startable (apply its redo log); return its WSREP position.

    Raises ``DumpFailed`` with the tool's own words if it fails; ``watch`` may kill it.
    """
    argv = [tool, "--no-defaults", "--prepare", f"--target-dir={data_dir}", *extra]
    tool_process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
    try:  # whatever ends this (the watch's check, an interrupt), the tool ends with it
        with watch(tool_process.kill):
            _, stderr = tool_process.communicate()
    finally:
        if tool_process.poll() is None:
            tool_process.kill()
            tool_process.communicate()
    lines = stderr.decode("utf-8", "replace").splitlines()
    code = tool_process.returncode
    if code != 0 or not any(COMPLETION_LINE in line for line in lines[-3:]):
        raise DumpFailed(f"{os.path.basename(tool)} --prepare of {data_dir} "
                         f"{_how(code)}: {problem(lines)}")
    match = next((m for line in lines if (m := WSREP_POSITION.search(line))), None)
    return (match[1], int(match[2])) if match else None


def problem(lines: Sequence[str]) -> str:
    """The line that best explains a failure: the last alarming one, else the last one."""
    alarming = [line for line in lines if PROBLEM_LINE.search(line)]
    return _strip_prefix((alarming or list(lines) or ["no message"])[-1])


def _strip_prefix(line: str) -> str:
    """Drop mariadb-backup's ``[00] 2026-01-01 00:00:00 `` thread/time prefix."""
    return re.sub(r"^\[\d+\]\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+", "", line)


def _how(code: int) -> str:
    if code == 0:
        return "did not report completion"
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
