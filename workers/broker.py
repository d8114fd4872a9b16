"""What the broker still holds: which queueings have a message waiting or in a worker's
hands.

A Pending session whose message is still queued waits for a worker; one whose message
is gone was lost (a Redis without persistence restarted, a flushed database) and must
be queued again. Celery cannot answer "is this message queued?", so this reads the
Redis transport's own layout through kombu's channel: each queue is a list per
priority, and every message a worker took but has not acknowledged is in the
``unacked`` hash. Messages carry the chain's ``root_id`` in their headers; that is
the session's queue token (``workflows/claims.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def queued_tokens(app: Any, queues: Iterable[str]) -> set[str] | None:
    """The ``root_id`` of every message in ``queues`` or unacknowledged; None if the
    broker cannot be read this way (not Redis, unreachable): then nobody knows."""
    try:
        with app.connection_for_read() as connection:
            channel = connection.default_channel
            keys = [channel._q_for_pri(queue, priority)
                    for queue in queues for priority in channel.priority_steps]
            with channel.conn_or_acquire() as client, \
                    client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.lrange(key, 0, -1)
                pipe.hvals(channel.unacked_key)
                answers = pipe.execute()
    except Exception as e:  # the sweep goes on without knowing; it bounds its copies
        log.warning("cannot read the broker's queues: %s: %s", type(e).__name__, e)
        return None
    messages = [m for listed in answers[:-1] for m in listed]
    unacked = [_unacked_message(raw) for raw in answers[-1]]
    return {token for token in map(_root_id, [*messages, *unacked]) if token}


def _unacked_message(raw: bytes) -> bytes | dict[str, Any]:
    """An ``unacked`` entry is ``[message, exchange, routing_key]``."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return raw
    return entry[0] if isinstance(entry, list) and entry else raw


def _root_id(message: bytes | dict[str, Any]) -> str | None:
    try:
        body = json.loads(message) if isinstance(message, bytes | str) else message
    except ValueError:
        return None
    headers = body.get("headers") if isinstance(body, dict) else None
    root = headers.get("root_id") if isinstance(headers, dict) else None
    return root if isinstance(root, str) else None
