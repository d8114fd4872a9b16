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

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)


def queued_tokens(app: Any, queues: Iterable[str]) -> set[str] | None:
    """The ``root_id`` of every message in ``queues`` or unacknowledged; None if the
    broker cannot be read this way (not Redis, unreachable): then nobody knows."""
    try:
        with _pipeline(app) as (channel, pipe):
            for key in (k for queue in queues for k in _queue_keys(channel, queue)):
                pipe.lrange(key, 0, -1)
            pipe.hvals(channel.unacked_key)
            answers = pipe.execute()
    except Exception as e:  # the sweep goes on without knowing; it bounds its copies
        log.warning("cannot read the broker's queues: %s: %s", type(e).__name__, e)
        return None
    messages = [m for listed in answers[:-1] for m in listed]
    unacked = [_unacked_message(raw) for raw in answers[-1]]
    return {token for token in map(_root_id, [*messages, *unacked]) if token}


def queue_depths(app: Any, queues: Iterable[str]) -> tuple[dict[str, int], int] | None:
    """Messages waiting per queue (all priorities), and messages taken by a worker and
    not yet acknowledged; None if the broker cannot be read this way."""
    names = list(queues)
    try:
        with _pipeline(app) as (channel, pipe):
            keys = [_queue_keys(channel, queue) for queue in names]
            for key in (k for per_queue in keys for k in per_queue):
                pipe.llen(key)
            pipe.hlen(channel.unacked_key)
            answers = pipe.execute()
    except Exception as e:  # the metrics say nothing rather than something wrong
        log.warning("cannot read the broker's queue lengths: %s: %s", type(e).__name__, e)
        return None
    lengths, at = {}, 0
    for queue, per_queue in zip(names, keys, strict=True):
        lengths[queue] = sum(int(n) for n in answers[at:at + len(per_queue)])
        at += len(per_queue)
    return lengths, int(answers[-1])


@contextlib.contextmanager
def _pipeline(app: Any) -> Iterator[tuple[Any, Any]]:
    """The Redis transport's channel and a pipeline on its connection."""
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            yield channel, pipe


def _queue_keys(channel: Any, queue: str) -> list[str]:
    """A queue is one Redis list per priority."""
    return [channel._q_for_pri(queue, priority) for priority in channel.priority_steps]


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
