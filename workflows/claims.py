"""Who may run a session: queue tokens and the claim of the first step.

A session can be queued more than once: the stale-session sweeper queues a silent one
again, a lost message is queued again, and the broker may hand the same message out
twice. Each queueing gets a fresh token (the chain's Celery ``root_id``), written to
``status.queueToken`` *before* the message is sent, so the status always names the one
queueing that may run. A step then decides from the status it read:

- the session ended → stop (a late or redelivered message);
- the status names another token → stop: this message was superseded by a later
  queueing (the original of a message that was queued again);
- the status says this token already claimed it → go on (a later step of the chain,
  or the broker's redelivery of one of its steps, which is idempotent);
- otherwise → claim it: Pending (or Running, claimed by a queueing that was replaced)
  becomes Running with ``claimedBy: <token>``, written only if the fields the decision
  read are unchanged, so that of two copies running at once exactly one wins.

Statuses written before tokens existed carry none: they are claimed by whoever comes,
as before. Pure: the status and the token in, the decision out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from workflows.phases import FINAL_PHASES, Phase

#: Status fields a claim reads; it is written only if they still hold what was read.
CLAIM_FIELDS = ("phase", "queueToken", "claimedBy")


@dataclass(frozen=True)
class ClaimDecision:
    action: Literal["stop", "proceed", "claim"]
    reason: str = ""
    #: For "claim": the status values the claim is conditioned on (None: absent).
    expect: Mapping[str, Any] = field(default_factory=dict)


def claim_decision(status: Mapping[str, Any], token: str) -> ClaimDecision:
    """What a step holding queue ``token`` does with a session in ``status``."""
    phase = status.get("phase")
    if phase in FINAL_PHASES:
        return ClaimDecision("stop", f"session already {phase}")
    current = status.get("queueToken")
    if current is not None and current != token:
        return ClaimDecision("stop", f"superseded: the session was queued again "
                                     f"(queueing {current}); this message ({token}) is "
                                     "a stale copy")
    if status.get("claimedBy") == token:
        return ClaimDecision("proceed")
    return ClaimDecision("claim", expect={name: status.get(name) for name in CLAIM_FIELDS})


def claim_patch(status: Mapping[str, Any], token: str, now_iso: str) -> dict[str, Any]:
    """The status patch of a claim: Running, by ``token``, started when it first started;
    a note that it waited for a worker is over."""
    return {"phase": Phase.RUNNING.value, "claimedBy": token, "claimedAt": now_iso,
            "startTime": status.get("startTime") or now_iso, "waiting": None}
