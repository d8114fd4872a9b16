"""An ``httpGet`` / ``httpPost`` hook: one request, an expected status, a timeout.

A POST carries the session's name and phase as JSON (with the hook's ``body`` fields),
and every request carries them as ``X-StashQ-*`` headers, so a receiver needs no
parsing to tell which backup it hears about. Header values (tokens, often) are never
logged or recorded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from workers.hooks.call import HookCall
from workflows.errors import HookFailed
from workflows.resources.hooks import HTTPAction

#: Bytes of a response body read for the output.
RESPONSE_BYTES = 4096


def run_http(action: HTTPAction, method: str, call: HookCall, timeout_s: float) -> str:
    """Send the request; the response's status and body start. ``HookFailed`` if the
    status is not the expected one (any 2xx when none is named) or nothing answered."""
    url = action.address()
    headers = {h.name: h.value for h in action.http_headers}
    headers |= {"X-StashQ-Session": call.session, "X-StashQ-Phase": call.session_phase,
                "X-StashQ-Hook-Phase": call.hook_phase}
    data = None
    if method == "POST":
        data, content_type = post_body(action.body, call)
        headers.setdefault("Content-Type", content_type)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, body = response.status, response.read(RESPONSE_BYTES)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(RESPONSE_BYTES)
    except (OSError, ValueError) as e:  # refused, unreachable, timed out, a bad URL
        reason = getattr(e, "reason", e)
        raise HookFailed(f"{method} {url}: no answer: {reason}") from None
    text = body.decode("utf-8", "replace")
    expected = action.expected_status
    if status != expected if expected is not None else not 200 <= status < 300:
        want = str(expected) if expected is not None else "2xx"
        raise HookFailed(f"{method} {url} answered {status} (expected {want}): {text[:200]}")
    return f"{status} {text}".strip()


def post_body(body: str | None, call: HookCall) -> tuple[bytes, str]:
    """A POST's bytes and content type: the hook's JSON object with the session's fields
    added, or the hook's other text as it is."""
    try:
        given: Any = json.loads(body) if body is not None else {}
    except ValueError:
        given = None
    if not isinstance(given, dict):
        assert body is not None
        return body.encode(), "text/plain; charset=utf-8"
    fields = given | {"session": call.session, "namespace": call.namespace,
                                 "kind": call.kind, "phase": call.session_phase,
                                 "hookPhase": call.hook_phase}
    return json.dumps(fields).encode(), "application/json"
