"""Child processes: a producing client runs behind stdbuf yet keeps its name and pid."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers import process
from workers.process import ClientProcess, buffered_stdout
from workflows.errors import DumpFailed


@pytest.fixture(autouse=True)
def _fresh_probe() -> Iterator[None]:
    process._working_stdbuf.cache_clear()
    yield
    process._working_stdbuf.cache_clear()


def test_a_dump_client_is_wrapped_and_keeps_its_name_pid_and_errors() -> None:
    if shutil.which("stdbuf") is None:
        pytest.fail("coreutils' stdbuf is missing (scripts/install.sh installs coreutils)")
    assert buffered_stdout(["mariadb-dump", "x"])[-2:] == ["mariadb-dump", "x"]
    assert buffered_stdout(["mariadb-dump"])[1:3] == ["-o", process.STDOUT_BUFFER]
    client = ClientProcess(["sh", "-c", "echo data; sleep 0.3; echo 'error: gone' >&2; exit 3"])
    assert client.name == "sh"
    comm = Path(f"/proc/{client.pid}/comm")
    deadline = time.monotonic() + 5
    while comm.read_text().strip() == "stdbuf" and time.monotonic() < deadline:
        time.sleep(0.01)  # stdbuf execs the client: the same pid becomes the client
    assert comm.read_text().strip() == "sh"
    chunks = client.chunks(1024)
    assert next(chunks) == b"data\n"
    with pytest.raises(DumpFailed, match=r"^sh exited with code 3: error: gone$"):
        list(chunks)


def test_a_stdbuf_that_does_not_work_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/false")  # exits 1
    assert buffered_stdout(["mariadb-dump", "x"]) == ["mariadb-dump", "x"]
