"""How the CLI prints: tables for people, JSON or YAML for programs, sizes and times."""

from __future__ import annotations

from typing import Any

import click


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.7 MiB``: sizes and rates as people read them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def started_at(session: Any) -> str:
    """Sort key: start time (ISO text sorts as time), sessions not started last."""
    return str(session.status.get("startTime") or "~")


def short_time(iso: object) -> str:
    """``2026-01-01T03:00:05.123Z`` → ``2026-01-01 03:00:05``; "-" if not started."""
    return str(iso)[:19].replace("T", " ") if iso else "-"


def print_items(items: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        import json

        click.echo(json.dumps(items, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(items, sort_keys=False, allow_unicode=True), nl=False)


def print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
