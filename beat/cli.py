"""``stashq``: apply resources, trigger backups and restores, inspect, run a worker.

One handler turns every StashQError into ``error: <message>`` on stderr and the
error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beat.cli_drills import verify
from beat.cli_flower import flower
from beat.cli_kube import register
from beat.env import Env, namespace_option, reports_errors
from workflows.errors import IntegrityError, StashQError
from workflows.phases import pending

# Each command imports what it uses: ``stashq --help`` loads neither pydantic, Redis nor
# Celery, and only the commands that queue a session load the worker's steps.
if TYPE_CHECKING:
    from workers.repository import Repository as RepositoryObject

#: Consecutive seconds tried for a new RestoreSession's name before giving up.
RESTORE_NAME_ATTEMPTS = 10


@click.group()
@click.version_option(package_name="stashq", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what the CLI does.")
def main(verbose: bool) -> None:
    """StashQ: backup and restore for MySQL, MariaDB and Percona XtraDB."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)


@main.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True,
              type=click.Path(path_type=Path), help="File or folder of YAML manifests.")
@namespace_option
@reports_errors
def apply(paths: tuple[Path, ...], namespace: str | None) -> None:
    """Apply files or folders of resources, all or nothing.

    Every resource is validated and its references checked first: if one is bad,
    nothing is applied. Each resource is reported created, configured or unchanged, as
    kubectl does; BackupSessions and RestoreSessions are queued.
    """
    from beat import apply as applying

    env = Env(namespace)
    for line in applying.apply_paths(env.store, paths, env.namespace, dispatch=env.queue):
        click.echo(line)


@main.command()
@click.argument("config")
@click.option("--wait/--no-wait", default=False, help="Wait for the session to finish.")
@click.option("--timeout", "timeout_s", default=24 * 3600, help="Seconds to wait at most.")
@namespace_option
@reports_errors
def backup(config: str, wait: bool, timeout_s: int, namespace: str | None) -> None:
    """Back up CONFIG now: create a BackupSession and queue it."""
    from beat.dispatch import new_backup_session
    from beat.progress import wait_for
    from workers.context import SessionRef
    from workflows.resources import BackupConfiguration

    env = Env(namespace)
    env.store.get(BackupConfiguration, config, env.namespace)
    now = int(time.time())
    session = None
    while session is None:  # two triggers in one second get consecutive names
        session = new_backup_session(env.store, config, env.namespace, now)
        now += 1
    ref = SessionRef("BackupSession", env.namespace, session.name)
    env.queue(ref)
    click.echo(f"BackupSession/{session.name} created")
    if wait:
        wait_for(env.store, ref, timeout_s, env.stalled)


@main.command()
@click.option("--repository", required=True, help="Repository holding the snapshot.")
@click.option("--target", required=True, help="AppBinding to restore into.")
@click.option("--snapshot", default="latest", show_default=True,
              help="Snapshot id, or latest: the newest snapshot of the source.")
@click.option("--source", default=None,
              help="BackupConfiguration (or AppBinding) the snapshot was taken from "
                   "(spec.target.rules[].sourceHost); needed when the repository holds "
                   "snapshots of several.")
@click.option("--database", default="", help="Restore a one-database snapshot under this name.")
@click.option("--overwrite", is_flag=True,
              help="Replace the tables of target databases that exist "
                   "(spec.target.overwrite); without it such a restore is refused.")
@click.option("--task", "task_name", default=None, help="Restore Task (default: by engine).")
@click.option("--wait/--no-wait", default=False,
              help="Wait for the session to finish, showing its progress.")
@click.option("--timeout", "timeout_s", default=24 * 3600, show_default=True,
              help="Seconds --wait waits at most (the session keeps running).")
@namespace_option
@reports_errors
def restore(repository: str, target: str, snapshot: str, source: str | None, database: str,
            overwrite: bool, task_name: str | None, wait: bool, timeout_s: int,
            namespace: str | None) -> None:
    """Restore a snapshot: a RestoreSession, checked, then queued.

    The Repository, the AppBinding and the snapshot are checked first; if one is
    missing (or latest is ambiguous) nothing is created. A target database that holds
    tables is refused at pre-check unless --overwrite.
    """
    from beat.progress import wait_for
    from workers.context import SessionRef
    from workflows.resources import AppBinding
    from workflows.restores import source_of

    env = Env(namespace)
    repo = open_repository(env, repository)
    env.store.get(AppBinding, target, env.namespace)
    chosen = repo.resolve_snapshot(snapshot, source)
    params = [{"name": "database", "value": database}] if database else []
    spec = {"repository": {"name": repository},
            "target": {"ref": {"name": target}, "overwrite": overwrite,
                       "rules": [{"sourceHost": source, "snapshots": [chosen.id]}]},
            "task": {"name": task_name, "params": params}}
    name = create_restore_session(env, target, spec)
    ref = SessionRef("RestoreSession", env.namespace, name)
    env.queue(ref)
    click.echo(f"snapshot {chosen.id} of {source_of(chosen)}")
    click.echo(f"RestoreSession/{name} created")
    if wait:
        wait_for(env.store, ref, timeout_s, env.stalled)


def create_restore_session(env: Env, target: str, spec: dict[str, Any]) -> str:
    """Create RestoreSession ``restore-<target>-<unix time>`` (two in one second: the
    next seconds' names); return its name."""
    from workflows.resources import RestoreSession
    from workflows.resources.base import API_VERSION, Metadata

    now = int(time.time())
    for attempt in range(RESTORE_NAME_ATTEMPTS):
        name = f"restore-{target}-{now + attempt}"
        session = RestoreSession(
            api_version=API_VERSION, kind="RestoreSession",
            metadata=Metadata(name=name, namespace=env.namespace),
            spec=spec,  # type: ignore[arg-type]
            status=pending())
        if env.store.create(session):
            return name
    raise StashQError(f"RestoreSession {name} and the {RESTORE_NAME_ATTEMPTS - 1} names "
                      "before it already exist; try again")


output_option = click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]),
                             default="table", show_default=True,
                             help="A table for people, or every field as JSON or YAML.")


@main.command()
@output_option
@namespace_option
@reports_errors
def sessions(output: str, namespace: str | None) -> None:
    """List backup and restore sessions.

    A table with phase, start, duration and failure reason; every field with -o json or
    -o yaml.
    """
    from workflows.resources import BackupSession, RestoreSession

    env = Env(namespace)
    found = [s for cls in (BackupSession, RestoreSession)
             for s in sorted(env.store.list(cls, env.namespace), key=_started)]
    if output != "table":
        _emit([s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in found],
              output)
        return
    rows = [(s.kind, s.name, s.status.get("phase", "Unknown"), _time(s.status.get("startTime")),
             s.status.get("sessionDuration", ""), s.status.get("reason", "")) for s in found]
    _table(("KIND", "NAME", "PHASE", "STARTED (UTC)", "DURATION", "REASON"), rows)


@main.command()
@click.argument("repository")
@output_option
@namespace_option
@reports_errors
def snapshots(repository: str, output: str, namespace: str | None) -> None:
    """List the snapshots in REPOSITORY.

    Manifests only: the data of an unfinished backup never shows.
    """
    env = Env(namespace)
    found = open_repository(env, repository).list_snapshots()
    if output != "table":
        _emit([s.model_dump(mode="json", by_alias=True)
               | {"sizeBytes": s.size_bytes, "rawBytes": s.raw_bytes} for s in found], output)
        return
    rows = [(s.id, s.finished_at.strftime("%Y-%m-%d %H:%M:%S"), s.engine, _size(s.raw_bytes),
             _size(s.size_bytes), ",".join(s.databases)) for s in found]
    _table(("ID", "TIME (UTC)", "ENGINE", "DUMP", "STORED", "DATABASES"), rows)


@main.command()
@click.argument("repository")
@click.option("--read-data", is_flag=True,
              help="Read every stream: verify its sha256 (and, if encrypted, authenticate it).")
@namespace_option
@reports_errors
def check(repository: str, read_data: bool, namespace: str | None) -> None:
    """Verify every snapshot of REPOSITORY.

    Sizes of every stream, and with --read-data their sha256 (and authentication); lists
    orphaned data. Exits 7 if anything is wrong.
    """
    env = Env(namespace)
    report = open_repository(env, repository).check(read_data=read_data)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for orphan in report.orphans:
        click.echo(f"orphan: {orphan} (no manifest; prune removes it)")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{report.snapshots} snapshot(s), {report.streams} stream(s), "
               f"{_size(report.bytes_read)} read: {verdict}")
    if not report.ok:
        raise IntegrityError(f'Repository "{repository}" failed its check')


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", "-c", default=2, show_default=True, help="Parallel steps.")
@click.option("--queues", "-Q", default="stashq.data,stashq.control", show_default=True,
              help="Queues to consume, comma-separated.")
@click.option("--loglevel", "-l", default="INFO", show_default=True,
              help="DEBUG, INFO, WARNING or ERROR.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int, queues: str, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run a worker of the Celery pool.

    Extra arguments go to "celery worker". Run any number, on any host sharing the
    broker.
    """
    fixed_mmap_threshold()  # before the pool forks: its processes inherit it
    env = Env(None)
    env.app.worker_main(["worker", f"--concurrency={concurrency}", f"--queues={queues}",
                         f"--loglevel={loglevel}", "-E", *celery_args])


#: glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h).
M_MMAP_THRESHOLD = -3
#: Allocations from this size up get a mapping of their own, unmapped when freed.
MMAP_THRESHOLD_BYTES = 2**20


def fixed_mmap_threshold() -> None:
    """Give every allocation ≥ 1 MiB (S3 parts, read chunks, zstd buffers) its own mapping.

    glibc raises the threshold to the size of each large block freed, so after the first
    such block the next ones come from the heap, where freed ones fragment instead of
    going back to the system. Fixed, a 256 MiB restore peaked at 147 MiB instead of 159
    (a parallel-2 restore at 187 instead of 209), and a worker no longer keeps up to
    ~20 MiB after a backup. Best effort: a libc without mallopt is left as is.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


@main.command("beat")
@click.option("-n", "--namespace", default=None,
              help="Schedule only this namespace (default: every namespace).")
@click.option("--starting-deadline", "starting_deadline_s", type=float, default=None,
              help="Seconds late a missed slot may still start; older ones are only counted "
                   "(default: STASHQ_STARTING_DEADLINE_S, 300).")
@click.option("--clock-origin", type=float, default=None, hidden=True,
              help="Test clock: the unix time it shows at --clock-anchor.")
@click.option("--clock-anchor", type=float, default=None, hidden=True,
              help="Test clock: the real unix time at which it shows --clock-origin.")
@click.option("--clock-rate", type=float, default=1.0, hidden=True,
              help="Test clock: how many times faster than real time it runs.")
@reports_errors
def run_beat(namespace: str | None, starting_deadline_s: float | None, clock_origin: float | None,
             clock_anchor: float | None, clock_rate: float) -> None:
    """Run the cron scheduler (any number of replicas).

    One BackupSession per cron slot of every BackupConfiguration; any number may run
    side by side: each slot's session is created once.
    """
    import signal

    from beat.clock import ScaledClock
    from beat.drills import DrillScheduler
    from beat.scheduler import Scheduler
    from workers import logs
    from workers.steps.restore_drill import DRILL_TASK
    from workers.sweeper import StaleSweeper

    env = Env(namespace)
    logging.getLogger().setLevel(logging.INFO)
    logs.install()
    env.store.ping()
    clock = None
    if clock_origin is not None:
        clock = ScaledClock(clock_origin, clock_anchor or time.time(), clock_rate)
    drills = DrillScheduler(env.store, lambda ns, name: env.app.signature(
        DRILL_TASK, args=(ns, name)).apply_async(), clock=clock, namespace=namespace)
    scheduler = Scheduler(env.store, env.queue,
                          clock=clock, namespace=namespace,
                          starting_deadline_s=(env.settings.starting_deadline_s
                                               if starting_deadline_s is None
                                               else starting_deadline_s),
                          orphan_after_s=env.settings.heartbeat_timeout_s,
                          sweeper=StaleSweeper(env.app, env.store, env.settings,
                                               namespace=namespace).maybe_sweep,
                          drills=drills.maybe_tick)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    scheduler.run()


def open_repository(env: Env, name: str) -> RepositoryObject:
    """The Repository object of Repository ``name``, opened with what its Secret holds."""
    from workers.repository import open_repository as open_object
    from workflows.resources import Repository, Secret

    repo = env.store.get(Repository, name, env.namespace)
    secret_name = repo.spec.backend.storage_secret_name
    secret = env.store.get(Secret, secret_name, repo.namespace) if secret_name else None
    return open_object(repo, secret, env.settings)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _started(session: Any) -> str:
    """Sort key: start time (ISO text sorts as time), sessions not started last."""
    return str(session.status.get("startTime") or "~")


def _time(iso: object) -> str:
    """``2026-01-01T03:00:05.123Z`` → ``2026-01-01 03:00:05``; "-" if not started."""
    return str(iso)[:19].replace("T", " ") if iso else "-"


def _emit(items: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        import json

        click.echo(json.dumps(items, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(items, sort_keys=False, allow_unicode=True), nl=False)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


register(main, backup)  # the kubectl-plugin verbs and watch, built on the group above
main.add_command(flower)
main.add_command(verify)
