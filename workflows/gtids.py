"""MariaDB GTIDs and binlog coordinates, as values: parsed, compared, formatted.

A MariaDB GTID is ``domain-server-sequence`` (``0-7-13``). Within a domain the
sequence numbers grow by one per transaction; the server id only says which server
wrote it. A GTID *state* (``@@gtid_binlog_pos``, a Gtid_list event, a dump's
``gtid_slave_pos``) holds the last GTID of each domain: ``0-7-13,1-2-5``. Everything
that decides "before", "after", "duplicate" or "missing" compares sequence numbers
domain by domain, never file names and positions, which differ from server to server
(Galera nodes, a server restarted with a new binlog sequence).

Also here: the binlog coordinates ``mariadb-dump --master-data=2 --gtid`` writes as
comments into a dump, read from its first and last bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GTID_PATTERN = re.compile(r"^(\d+)-(\d+)-(\d+)$")
#: ``-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000002', MASTER_LOG_POS=1352;``
CHANGE_MASTER = re.compile(rb"^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', "
                           rb"MASTER_LOG_POS=(\d+);", re.MULTILINE)
#: ``-- SET GLOBAL gtid_slave_pos='0-7-13';`` (near the end of the dump)
GTID_SLAVE_POS = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([0-9,\- ]*)';", re.MULTILINE)


@dataclass(frozen=True, order=True)
class Gtid:
    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Gtid:
        match = GTID_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f'"{text}" is not a GTID (domain-server-sequence, e.g. 0-1-42)')
        domain, server, seq = (int(g) for g in match.groups())
        return cls(domain, server, seq)


#: The last GTID of each domain.
GtidState = Mapping[int, Gtid]


def parse_state(text: str) -> dict[int, Gtid]:
    """``"0-7-13,1-2-5"`` → {0: 0-7-13, 1: 1-2-5}; empty text: the empty state."""
    state: dict[int, Gtid] = {}
    for part in text.replace(" ", "").split(","):
        if part:
            gtid = Gtid.parse(part)
            state[gtid.domain] = gtid
    return state


def format_state(state: GtidState) -> str:
    return ",".join(str(state[d]) for d in sorted(state))


def advance(state: GtidState, gtids: Iterable[Gtid]) -> dict[int, Gtid]:
    """``state`` after ``gtids`` (in binlog order)."""
    out = dict(state)
    for gtid in gtids:
        out[gtid.domain] = gtid
    return out


def contains(state: GtidState, gtid: Gtid) -> bool:
    """Whether the transaction ``gtid`` is at or before ``state`` (already applied)."""
    known = state.get(gtid.domain)
    return known is not None and gtid.seq <= known.seq


def at_or_before(a: GtidState, b: GtidState) -> bool:
    """Whether every transaction of state ``a`` is in state ``b``."""
    return all(contains(b, gtid) for gtid in a.values())


def missing_between(state: GtidState, gtid: Gtid) -> int:
    """How many transactions of ``gtid``'s domain lie between ``state`` and ``gtid``
    (0: it follows directly, or its domain is new to ``state``)."""
    known = state.get(gtid.domain)
    return 0 if known is None else max(0, gtid.seq - known.seq - 1)


@dataclass(frozen=True)
class Coordinates:
    """Where a consistent snapshot stands in the source's binlog."""

    gtid: str | None   #: GTID state, ``0-7-13`` (None: the dump did not say)
    log_file: str      #: binlog file name
    log_pos: int       #: byte position in it


def dump_coordinates(head: bytes, tail: bytes) -> Coordinates | None:
    """The coordinates a dump states in its first (``head``) and last (``tail``) bytes;
    None if it states none (a server without binlog, a client that does not write them)."""
    position = CHANGE_MASTER.search(head)
    if position is None:
        return None
    gtid = GTID_SLAVE_POS.search(tail)
    return Coordinates(gtid=gtid.group(1).decode().replace(" ", "") if gtid else None,
                       log_file=position.group(1).decode(), log_pos=int(position.group(2)))
