"""Waiting for a session in a terminal: phase, bytes, rate and elapsed time.

On a terminal the progress line redraws in place; otherwise a line is printed only
when the phase changes, so logs of non-interactive runs stay short.
"""

from __future__ import annotations

import sys
import time

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


def poll_interval(elapsed_s: float) -> float:
    return min(MAX_POLL_INTERVAL_S, max(MIN_POLL_INTERVAL_S, elapsed_s / 10))


def wait_for(store: ResourceStore, ref: SessionRef, timeout_s: float) -> dict[str, object]:
    """Block until the session is final; raise ``SessionFailed`` with its reason."""
    tty = sys.stderr.isatty()
    started, last_phase = time.monotonic(), ""
    while True:
        status = store.get(ref.cls, ref.name, ref.namespace).status
        phase = str(status.get("phase", "Unknown"))
        elapsed = time.monotonic() - started
        if tty:
            line = progress_line(phase, dict(status.get("progress") or {}), elapsed)
            click.echo(f"\r{line}", nl=False, err=True)
        elif phase != last_phase:
            click.echo(f"{ref.kind}/{ref.name}: {phase}", err=True)
        last_phase = phase
        if phase in FINAL_PHASES:
            break
        if elapsed > timeout_s:
            raise StashQError(f"gave up waiting for {ref} after {timeout_s:.0f}s "
                              f"(still {phase}); it keeps running")
        time.sleep(poll_interval(elapsed))
    if tty:
        click.echo("", err=True)
    if phase == Phase.FAILED:
        raise SessionFailed(f"{ref.kind}/{ref.name} failed: {status.get('reason', 'no reason')}")
    click.echo(f"{ref.kind}/{ref.name} {phase} in {status.get('sessionDuration', '?')}")
    return status
