"""Running a command in a pod through the Kubernetes API (an ``exec`` hook).

Beside the Kubernetes store, the other module allowed to import ``kubernetes``
(pyproject.toml): pod exec is a stream (WebSocket), not a resource, and the store's
module is about resources. The pod is found by name or as the first Running, Ready pod
whose labels match; the command's stdout and stderr are read until it exits or its
timeout passes, when the stream is closed (a container without a TTY may let the
command run on: say so in the hook's command with ``timeout``, as for any exec).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from workflows.errors import HookFailed
from workflows.resources.hooks import PodSelector

#: Seconds one read of the exec stream waits for output.
READ_STEP_S = 1.0


def pick_pod(core: client.CoreV1Api, namespace: str, selector: PodSelector) -> str:
    """The pod's name: the named one, or the first Running and Ready match (by name)."""
    if selector.name is not None:
        return selector.name
    labels = ",".join(f"{k}={v}" for k, v in sorted(selector.match_labels.items()))
    pods = core.list_namespaced_pod(namespace, label_selector=labels).items
    ready = sorted(str(p.metadata.name) for p in pods if p.metadata is not None and _ready(p))
    if not ready:
        raise HookFailed(f'no Running and Ready pod in namespace "{namespace}" matches '
                         f"{labels} ({len(pods)} match but are not ready)")
    return ready[0]


def refusal(e: ApiException) -> str:
    """What the API server said when it refused the exec's upgrade: the stream client
    wraps the handshake's failure (status and Status body) in an ApiException."""
    cause = e.__context__
    code = getattr(cause, "status_code", None) or e.status
    body = getattr(cause, "resp_body", None)
    try:
        message = str(json.loads(body)["message"]) if body else str(e.reason)
    except (ValueError, KeyError, TypeError):
        message = str(e.reason)
    return f"{code} {message}" if code else message


def _ready(pod: client.V1Pod) -> bool:
    if pod.status is None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())


def exec_in_pod(core: client.CoreV1Api, namespace: str, selector: PodSelector,
                container: str | None, command: Sequence[str],
                timeout_s: float) -> tuple[int, str]:
    """Exit code and output of ``command`` in the pod; ``HookFailed`` at the timeout."""
    pod = pick_pod(core, namespace, selector)
    extra = {"container": container} if container else {}
    try:
        response = stream(core.connect_get_namespaced_pod_exec, pod, namespace,
                          command=list(command), stderr=True, stdin=False, stdout=True,
                          tty=False, _preload_content=False, **extra)
    except ApiException as e:
        where = f'pod "{pod}"' + (f' container "{container}"' if container else "")
        raise HookFailed(f'exec in {where} (namespace "{namespace}") refused: '
                         f"{refusal(e)}") from None
    deadline, output = time.monotonic() + timeout_s, []
    try:
        while response.is_open():
            if time.monotonic() > deadline:
                raise HookFailed(f'{command[0]} in pod "{pod}" timed out after {timeout_s:g} s; '
                                 "its stream was closed")
            response.update(timeout=READ_STEP_S)
            # timeout=0: what update() buffered; the default (None) would wait for output
            # without end, and a command that prints nothing would never time out.
            output += [response.read_stdout(timeout=0), response.read_stderr(timeout=0)]
    finally:
        response.close()
    code = response.returncode
    return (code if code is not None else 1), "".join(o for o in output if o)
