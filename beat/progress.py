"""Waiting for a session in a terminal: phase, bytes, rate and elapsed time.

On a terminal the progress line redraws in place, and its last state keeps the totals
(dumped, stored, rate, duration); otherwise a line is printed only when the phase
changes, so logs of non-interactive runs stay short. The final line has the totals too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TypeGuard

import click

from workers.context import SessionRef
from workers.state.base import ResourceStore
from workflows.errors import SessionFailed, StashQError
from workflows.phases import FINAL_PHASES, Phase

#: Seconds between polls of the session status: a tenth of the time waited so far,
#: within these bounds, so a short session is seen done within ~10 % of its duration
#: and a long one costs the store two reads a second.
MIN_POLL_INTERVAL_S = 0.05
MAX_POLL_INTERVAL_S = 0.5
#: Seconds Pending before the wait asks why (once): a worker that is there takes a new
#: session within a poll or two, so this long means none is, or all are busy.
PENDING_NOTICE_S = 5.0
#: Why a Pending session may never start (its status in), or None if nothing is wrong.
Stalled = Callable[[Mapping[str, object]], str | None]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def progress_line(phase: str, progress: dict[str, object], elapsed_s: float) -> str:
    dumped = float(progress.get("bytesDumped", 0) or 0)  # type: ignore[arg-type]
    rate = float(progress.get("rateBytesPerSecond", 0) or 0)  # type: ignore[arg-type]
    return (f"{phase:<9} {human_bytes(dumped):>10}  {human_bytes(rate):>10}/s  "
            f"{elapsed_s:6.1f}s elapsed")


def totals(kind: str, status: Mapping[str, object]) -> str:
    """``3.7 MiB dumped, 1.6 MiB stored, 4.6 MiB/s`` from a finished session's snapshot
    stats (empty if it has none: a Failed or Skipped session)."""
    snapshot = status.get("snapshot")
    if not isinstance(snapshot, dict) or not _number(snapshot.get("totalSize")):
        return ""
    raw, seconds = snapshot.get("rawSize"), snapshot.get("processingTimeSeconds")
    parts = []
    if _number(raw):
        parts.append(f"{human_bytes(raw)} {'dumped' if kind == 'BackupSession' else 'restored'}")
    parts.append(f"{human_bytes(snapshot['totalSize'])} stored")
    if _number(raw) and _number(seconds) and seconds > 0:
        parts.append(f"{human_bytes(raw / seconds)}/s")
    return ", ".join(parts)


def final_line(kind: str, phase: str, status: Mapping[str, object]) -> str:
    """The progress line's last state: the totals and the session's duration, not the
    cleared progress (which read as "nothing saved")."""
    done = totals(kind, status)
    duration = status.get("sessionDuration")
    parts = (f"{phase:<9}", done, f"in {duration}" if duration else "")
    return "  ".join(p for p in parts if p).rstrip()


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def poll_interval(elapsed_s: float) -> float:
    return min(MAX_POLL_INTERVAL_S, max(MIN_POLL_INTERVAL_S, elapsed_s / 10))


class Display:
    """Where waiting shows: a line redrawn in place on a terminal, else one line per
    phase; notices on lines of their own."""

    def __init__(self, ref: SessionRef, tty: bool) -> None:
        self.ref, self.tty, self.width, self.phase = ref, tty, 0, ""

    def show(self, phase: str, status: Mapping[str, object], elapsed_s: float) -> None:
        if self.tty:
            progress = status.get("progress")
            line = (final_line(self.ref.kind, phase, status) if phase in FINAL_PHASES else
                    progress_line(phase, progress if isinstance(progress, dict) else {},
                                  elapsed_s))
            click.echo(f"\r{line.ljust(self.width)}", nl=False, err=True)
            self.width = len(line)
        elif phase != self.phase:
            click.echo(f"{self.ref.kind}/{self.ref.name}: {phase}", err=True)
        self.phase = phase

    def notice(self, text: str) -> None:
        click.echo(("\n" if self.tty else "") + f"{self.ref.kind}/{self.ref.name}: {text}",
                   err=True)
        self.width = 0

    def end(self) -> None:
        if self.tty:
            click.echo("", err=True)


def wait_for(store: ResourceStore, ref: SessionRef, timeout_s: float,
             stalled: Stalled | None = None) -> dict[str, object]:
    """Block until the session is final; raise ``SessionFailed`` with its reason.

    A session still Pending after ``PENDING_NOTICE_S`` is asked about once:
    ``stalled(status)`` says why it may never start (no worker, say), or None.
    """
    display = Display(ref, sys.stderr.isatty())
    started, asked = time.monotonic(), False
    while True:
        status = store.get(ref.cls, ref.name, ref.namespace).status
        phase = str(status.get("phase", "Unknown"))
        elapsed = time.monotonic() - started
        display.show(phase, status, elapsed)
        if phase in FINAL_PHASES:
            break
        if stalled and not asked and phase == Phase.PENDING and elapsed >= PENDING_NOTICE_S:
            asked = True
            if (why := stalled(status)) is not None:
                display.notice(f"still Pending after {elapsed:.0f}s: {why}")
        if elapsed > timeout_s:
            raise StashQError(f"gave up waiting for {ref} after {timeout_s:.0f}s "
                              f"(still {phase}); it keeps running")
        time.sleep(poll_interval(elapsed))
    display.end()
    if phase == Phase.FAILED:
        raise SessionFailed(f"{ref.kind}/{ref.name} failed: {status.get('reason', 'no reason')}")
    done = totals(ref.kind, status)
    click.echo(f"{ref.kind}/{ref.name} {phase} in {status.get('sessionDuration', '?')}"
               + (f": {done}" if done else ""))
    return status
