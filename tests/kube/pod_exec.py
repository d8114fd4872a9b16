"""Pod exec for the fake API server: ``GET .../pods/NAME/exec`` upgraded to a WebSocket.

What the official client's ``kubernetes.stream`` expects of a real API server (the
kubelet behind it): the handshake answers 101 with ``v4.channel.k8s.io``; every
binary frame starts with its channel (1 stdout, 2 stderr, 3 the final Status:
``Success``, or ``Failure`` with the exit code in ``details.causes``); then a close
frame. A pod that does not exist is a 404 before any upgrade, a container it does not
have a 400 (``container X is not valid for pod Y``), each with a Status body.

The "container" is a process on this host: the command runs with the container's
``env`` (name/value pairs of the pod's spec) and nothing else, so a test can see what
a hook would print in a pod. When the client closes the stream (a hook's timeout) the
process group is killed — kinder than a real kubelet, which may let it run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

#: The WebSocket handshake's fixed key suffix (RFC 6455, section 1.3).
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "v4.channel.k8s.io"
STDOUT, STDERR, ERROR = 1, 2, 3
OPCODE_BINARY, OPCODE_CLOSE = 0x2, 0x8
#: Bytes read from the command's output per frame.
READ_BYTES = 4096

Raw = dict[str, Any]


class ExecRefused(Exception):
    """The exec is refused before the upgrade: an HTTP status and a message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def choose_container(pod: Raw, name: str, container: str | None) -> Raw:
    """The container the exec runs in, or ``ExecRefused`` as the API server says it."""
    containers = (pod.get("spec") or {}).get("containers") or []
    names = [c.get("name") for c in containers]
    if container is None:
        if len(containers) != 1:
            raise ExecRefused(400, "BadRequest", f"a container name must be specified for pod "
                              f"{name}, choose one of: [{' '.join(map(str, names))}]")
        return dict(containers[0])
    for c in containers:
        if c.get("name") == container:
            return dict(c)
    raise ExecRefused(400, "BadRequest", f"container {container} is not valid for pod {name}")


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 2**16:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


def final_status(code: int) -> Raw:
    """The Status the kubelet sends on the error channel when the command exits."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


class ExecSession:
    """One exec: the process, its output relayed as frames, stopped if the client goes."""

    def __init__(self, conn: socket.socket, write: Callable[[bytes], None],
                 command: list[str], container: Raw) -> None:
        self.conn, self._write, self.command = conn, write, command
        self._lock = threading.Lock()
        env = {str(e["name"]): str(e.get("value", "")) for e in container.get("env") or ()}
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.client_gone = threading.Event()

    def send(self, channel: int, data: bytes) -> None:
        with self._lock:
            self._write(frame(OPCODE_BINARY, bytes([channel]) + data))

    def run(self) -> None:
        relays = [threading.Thread(target=self._relay, args=(pipe, channel), daemon=True)
                  for pipe, channel in ((self.proc.stdout, STDOUT), (self.proc.stderr, STDERR))]
        for relay in relays:
            relay.start()
        threading.Thread(target=self._watch_client, daemon=True).start()
        code = self.proc.wait()
        for relay in relays:
            relay.join()
        if self.client_gone.is_set():
            return
        try:
            self.send(ERROR, json.dumps(final_status(code)).encode())
            with self._lock:
                self._write(frame(OPCODE_CLOSE, (1000).to_bytes(2, "big")))
        except OSError:
            pass

    def _relay(self, pipe: Any, channel: int) -> None:
        for data in iter(lambda: pipe.read1(READ_BYTES), b""):
            try:
                self.send(channel, data)
            except OSError:
                return

    def _watch_client(self) -> None:
        """The client sends nothing but a close frame (no stdin): any byte or the end of
        the connection means it is gone, and so is the command."""
        try:
            data = self.conn.recv(64)
        except OSError:
            data = b""
        if data and data[0] & 0x0F != OPCODE_CLOSE:
            return
        if self.proc.poll() is None:
            self.client_gone.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
