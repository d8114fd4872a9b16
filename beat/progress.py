"""Waiting for a session in a terminal: phase, bytes, rate and elapsed time.

On a terminal the progress line redraws in place, and its last state keeps the totals
(dumped, stored, rate, duration); otherwise a line is printed only when the phase
changes, so logs of non-interactive runs stay short. The final line has the totals too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TypeGuard

import click

from workers.context import SessionRef
from workers.state.base import ResourceStore
from workflows.errors import SessionFailed, StashQError

#: Seconds between polls of the session status: a tenth of the time waited so far,
#: within these bounds, so a short session is seen done within ~10 % of its duration
#: and a long one costs the store two reads a second.
MIN_POLL_INTERVAL_S = 0.05
MAX_POLL_INTERVAL_S = 0.5
FINAL = ("Succeeded", "Failed", "Skipped")


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


def wait_for(store: ResourceStore, ref: SessionRef, timeout_s: float) -> dict[str, object]:
    """Block until the session is final; raise ``SessionFailed`` with its reason."""
    tty = sys.stderr.isatty()
    started, last_phase, width = time.monotonic(), "", 0
    while True:
        status = store.get(ref.cls, ref.name, ref.namespace).status
        phase = str(status.get("phase", "Unknown"))
        elapsed = time.monotonic() - started
        if tty:
            line = (final_line(ref.kind, phase, status) if phase in FINAL else
                    progress_line(phase, dict(status.get("progress") or {}), elapsed))
            click.echo(f"\r{line.ljust(width)}", nl=False, err=True)
            width = len(line)
        elif phase != last_phase:
            click.echo(f"{ref.kind}/{ref.name}: {phase}", err=True)
        last_phase = phase
        if phase in FINAL:
            break
        if elapsed > timeout_s:
            raise StashQError(f"gave up waiting for {ref} after {timeout_s:.0f}s "
                              f"(still {phase}); it keeps running")
        time.sleep(poll_interval(elapsed))
    if tty:
        click.echo("", err=True)
    if phase == "Failed":
        raise SessionFailed(f"{ref.kind}/{ref.name} failed: {status.get('reason', 'no reason')}")
    done = totals(ref.kind, status)
    click.echo(f"{ref.kind}/{ref.name} {phase} in {status.get('sessionDuration', '?')}"
               + (f": {done}" if done else ""))
    return status
