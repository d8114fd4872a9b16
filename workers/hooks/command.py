"""An ``exec`` hook: a command on this worker's host, or in a pod through the store.

On the host the command runs in a session of its own with a small environment (no
worker setting, so no broker or store URL with a password in it) plus the session's
name and phase; at its timeout the whole process group is killed, so a shell's
children go too. In a pod it runs through the store (``PodExec``): the
Kubernetes API; the Redis store refuses, saying so.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence

from workers.hooks.call import HookCall
from workers.state.base import PodExec
from workflows.errors import HookFailed
from workflows.resources.hooks import HookAction

#: Characters of a command's output kept (its end: where errors are).
OUTPUT_CHARS = 8192
#: Environment variables a host command inherits from the worker.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def run_command(store: PodExec, action: HookAction, call: HookCall, timeout_s: float) -> str:
    """Run the exec action where it says; its output. ``HookFailed`` on a non-zero exit."""
    assert action.exec is not None
    command = action.exec.command
    if action.pod is not None or action.container_name:
        if action.pod is None:
            raise HookFailed("containerName names no pod: add pod.name or pod.matchLabels")
        code, output = store.exec_in_pod(action.pod.namespace or call.namespace, action.pod,
                                         action.container_name, command, timeout_s)
    else:
        code, output = run_on_host(command, call, timeout_s)
    output = output[-OUTPUT_CHARS:].strip()
    if code != 0:
        last = output.splitlines()[-1] if output else "no output"
        raise HookFailed(f"{os.path.basename(command[0])} exited with code {code}: {last}")
    return output


def run_on_host(command: Sequence[str], call: HookCall, timeout_s: float) -> tuple[int, str]:
    """Exit code and output (stdout and stderr together) of ``command`` on this host."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
    env |= {"STASHQ_SESSION": call.session, "STASHQ_NAMESPACE": call.namespace,
            "STASHQ_SESSION_PHASE": call.session_phase, "STASHQ_HOOK_PHASE": call.hook_phase}
    try:
        proc = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as e:
        raise HookFailed(f"{command[0]} could not be started: {e.strerror}") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise HookFailed(f"{os.path.basename(command[0])} timed out after {timeout_s:g} s "
                         "and was killed") from None
    return proc.returncode, out.decode("utf-8", "replace")
