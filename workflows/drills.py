"""Restore drill decisions: which snapshots to check, whether a scratch target is safe,
whether an assertion holds, and the verdict a drill's status and metrics report.

Pure: models and values in, values out (``now`` as unix seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workflows.resources import AppBinding
from workflows.resources.drill import Assertion, DrillSnapshots, scratch_name
from workflows.restores import source_of
from workflows.snapshots import Snapshot

PASSED, FAILED = "Passed", "Failed"
#: Failures listed in a drill's status at most (the log has all of them).
STATUS_FAILURES = 20


def same_server(a: AppBinding, b: AppBinding) -> bool:
    """Whether two AppBindings reach the same database server (same object or address)."""
    return (a.namespace, a.name) == (b.namespace, b.name) or a.address() == b.address()


def scratch_conflict(scratch: AppBinding, prefix: str, source: AppBinding,
                     databases: Sequence[str]) -> str | None:
    """Why restoring a snapshot of ``databases`` on ``source`` into ``scratch`` under
    ``prefix`` would touch the source database (None: it would not). On the same server,
    a configuration that backs up every database (``databases`` empty) is refused too:
    which names its snapshots hold is known only once they are taken."""
    if not same_server(scratch, source):
        return None
    where = f'AppBinding "{scratch.name}" is the server of AppBinding "{source.name}"'
    if not databases:
        return (f"{where}, whose every database is backed up: a scratch database there "
                "could be a source database; use another server, or name the databases")
    clash = sorted(set(databases) & {scratch_name(prefix, d) for d in databases})
    if clash:
        return (f'{where} and scratch database "{clash[0]}" would be its source database '
                f'"{clash[0]}": choose another databasePrefix')
    return None


def snapshots_to_check(snapshots: Sequence[Snapshot], configuration: str,
                       mode: DrillSnapshots, checked_through: str | None) -> list[Snapshot]:
    """The snapshots of ``configuration`` a drill restores, oldest first: its newest, or
    (EveryNew) each finished after ``checked_through`` (the last one checked, by id)."""
    mine = sorted((s for s in snapshots if source_of(s).configuration == configuration),
                  key=lambda s: s.finished_at)
    if not mine:
        return []
    if mode is DrillSnapshots.LATEST or checked_through is None:
        return mine[-1:]
    ids = [s.id for s in mine]
    if checked_through not in ids:  # forgotten by retention meanwhile: newer than it
        return mine[-1:]
    return mine[ids.index(checked_through) + 1:]


def assertion_problem(assertion: Assertion, rows: Sequence[Sequence[Any]]) -> str | None:
    """Why the assertion's result is not the expected one (None: it is)."""
    label = f'assertion "{assertion.name or assertion.query[:60]}"'
    got = [tuple(None if v is None else _text(v) for v in row) for row in rows]
    if assertion.expected_rows is not None:
        want = [tuple(r) for r in assertion.expected_rows]
        if got != want:
            return f"{label}: expected rows {want}, got {got[:5]}"
        return None
    first = got[0][0] if got and got[0] else None
    if first != assertion.expected:
        return f'{label}: expected "{assertion.expected}", got "{first}"'
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass
class DrillReport:
    """What one drill of one snapshot found."""

    snapshot: str
    configuration: str
    scratch: Sequence[str] = ()
    tables: int = 0
    rows: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: What the drill could not check, said rather than passed over (not failures).
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self, *, now_iso: str) -> dict[str, Any]:
        """The report as the drill's status holds it."""
        record = {"snapshot": self.snapshot, "configuration": self.configuration,
                  "result": PASSED if self.passed else FAILED,
                  "durationSeconds": round(self.seconds, 3), "tables": self.tables,
                  "rows": self.rows, "failures": self.failures[:STATUS_FAILURES],
                  "finishedAt": now_iso}
        return record | ({"notes": self.notes} if self.notes else {})


def drill_status(reports: Sequence[DrillReport], previous: Mapping[str, Any], *,
                 now: float, now_iso: str) -> dict[str, Any]:
    """The status patch after a drill: the last result, and per configuration its last
    drill and last passed one (``lastPassed`` of an earlier drill stays)."""
    configurations: dict[str, Any] = {}
    old = previous.get("configurations") or {}
    for report in reports:
        entry = dict(old.get(report.configuration) or {}) if isinstance(old, dict) else {}
        entry |= {"last": report.record(now_iso=now_iso), "lastTimestamp": now,
                  "checkedThrough": report.snapshot}
        if report.passed:
            entry |= {"lastPassed": report.snapshot, "lastPassedTimestamp": now}
        configurations[report.configuration] = entry
    failures = [f"{r.snapshot}: {f}" for r in reports for f in r.failures]
    return {"phase": PASSED if not failures else FAILED,
            "reason": "; ".join(failures[:3]) if failures else None,
            "lastDrillTime": now_iso, "configurations": configurations,
            "snapshotsChecked": len(reports)}


def rename_databases(chunks: Iterable[bytes], names: Mapping[str, str]) -> Iterator[bytes]:
    """A multi-database dump with its databases renamed (``names``: old → new): the
    lines that name a database (``CREATE DATABASE``, ``USE``, ``ALTER DATABASE``) are
    rewritten, every other byte passes as it is. Restores a snapshot beside its source."""
    quoted = {b"`" + o.replace("`", "``").encode() + b"`":
              b"`" + n.replace("`", "``").encode() + b"`" for o, n in names.items()}
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        end = data.rfind(b"\n") + 1
        pending = data[end:]
        if end:
            yield b"".join(_renamed(line, quoted) for line in data[:end].splitlines(True))
    if pending:
        yield _renamed(pending, quoted)


def _renamed(line: bytes, quoted: Mapping[bytes, bytes]) -> bytes:
    if not (line.startswith((b"USE `", b"CREATE DATABASE")) or b"ALTER DATABASE `" in line):
        return line
    for old, new in quoted.items():
        line = line.replace(old, new)
    return line
