"""``stashq``: apply resources, trigger backups and restores, inspect, run a worker.

One handler turns every StashQError into ``error: <message>`` on stderr and the
error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from workflows.errors import IntegrityError, StashQError
from workflows.phases import pending
from workflows.settings import Settings

# Each command imports what it uses: ``stashq --help`` loads neither pydantic, Redis nor
# Celery, and only the commands that queue a session load the worker's steps.
if TYPE_CHECKING:
    from workers.context import SessionRef

F = TypeVar("F", bound=Callable[..., Any])
#: Consecutive seconds tried for a new RestoreSession's name before giving up.
RESTORE_NAME_ATTEMPTS = 10


class Env:
    """What every command needs, built once from the environment."""

    def __init__(self, namespace: str | None) -> None:
        from workers.state import open_store

        self.settings = Settings.from_env(os.environ)
        self.namespace = namespace or self.settings.namespace
        self.store = open_store(self.settings)

    @functools.cached_property
    def app(self) -> Any:
        from workers.app import create_app

        return create_app(self.settings)

    def queue(self, ref: SessionRef) -> None:
        """Queue a session just created. On Kubernetes the watcher queues every new
        session (one path, claimed once), so commands and beat only create it there."""
        if self.settings.store != "kubernetes":
            from beat.dispatch import dispatch

            dispatch(self.app, self.store, self.settings, ref)


def reports_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StashQError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


namespace_option = click.option("-n", "--namespace", default=None,
                                help="Namespace (default: STASHQ_NAMESPACE or 'default').")


@click.group()
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
    """Validate every resource, then apply them all (nothing is applied if one is bad)."""
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
        wait_for(env.store, ref, timeout_s)


@main.command()
@click.option("--repository", required=True, help="Repository holding the snapshot.")
@click.option("--target", required=True, help="AppBinding to restore into.")
@click.option("--snapshot", default="latest", show_default=True, help="Snapshot id or latest.")
@click.option("--database", default="", help="Restore a one-database snapshot under this name.")
@click.option("--task", "task_name", default=None, help="Restore Task (default: by engine).")
@click.option("--wait/--no-wait", default=False)
@click.option("--timeout", "timeout_s", default=24 * 3600)
@namespace_option
@reports_errors
def restore(repository: str, target: str, snapshot: str, database: str, task_name: str | None,
            wait: bool, timeout_s: int, namespace: str | None) -> None:
    """Restore a snapshot: create a RestoreSession and queue it."""
    from beat.progress import wait_for
    from workers.context import SessionRef
    from workflows.resources import RestoreSession
    from workflows.resources.base import API_VERSION, Metadata

    env = Env(namespace)
    params = [{"name": "database", "value": database}] if database else []
    now = int(time.time())
    for attempt in range(RESTORE_NAME_ATTEMPTS):  # two restores in one second: next names
        name = f"restore-{target}-{now + attempt}"
        session = RestoreSession(
            api_version=API_VERSION, kind="RestoreSession",
            metadata=Metadata(name=name, namespace=env.namespace),
            spec={"repository": {"name": repository},  # type: ignore[arg-type]
                  "target": {"ref": {"name": target}, "rules": [{"snapshots": [snapshot]}]},
                  "task": {"name": task_name, "params": params}},
            status=pending())
        if env.store.create(session):
            break
    else:
        raise StashQError(f"RestoreSession {name} and the {RESTORE_NAME_ATTEMPTS - 1} names "
                          "before it already exist; try again")
    ref = SessionRef("RestoreSession", env.namespace, name)
    env.queue(ref)
    click.echo(f"RestoreSession/{name} created")
    if wait:
        wait_for(env.store, ref, timeout_s)


@main.command()
@namespace_option
@reports_errors
def sessions(namespace: str | None) -> None:
    """List backup and restore sessions with their phase and reason."""
    from workflows.resources import BackupSession, RestoreSession

    env = Env(namespace)
    rows = [(s.kind, s.name, s.status.get("phase", "Unknown"), s.status.get("sessionDuration", ""),
             s.status.get("reason", "")) for cls in (BackupSession, RestoreSession)
            for s in env.store.list(cls, env.namespace)]
    _table(("KIND", "NAME", "PHASE", "DURATION", "REASON"), rows)


@main.command()
@click.argument("repository")
@namespace_option
@reports_errors
def snapshots(repository: str, namespace: str | None) -> None:
    """List the snapshots in REPOSITORY (manifests only: unfinished data never shows)."""
    from workers.snapshots import list_snapshots

    env = Env(namespace)
    rows = [(s.id, s.finished_at.strftime("%Y-%m-%d %H:%M:%S"), s.engine, _size(s.raw_bytes),
             _size(s.size_bytes), ",".join(s.databases))
            for s in list_snapshots(*open_repository(env, repository))]
    _table(("ID", "TIME (UTC)", "ENGINE", "DUMP", "STORED", "DATABASES"), rows)


@main.command()
@click.argument("repository")
@click.option("--read-data", is_flag=True,
              help="Read every stream: verify its sha256 (and, if encrypted, authenticate it).")
@namespace_option
@reports_errors
def check(repository: str, read_data: bool, namespace: str | None) -> None:
    """Verify every snapshot of REPOSITORY; exit 7 if anything is wrong."""
    from workers.check import check_repository

    env = Env(namespace)
    storage, cipher = open_repository(env, repository)
    report = check_repository(storage, cipher, read_data=read_data)
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
@click.option("--queues", "-Q", default="stashq.data,stashq.control", show_default=True)
@click.option("--loglevel", "-l", default="INFO")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(concurrency: int, queues: str, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run a worker of the Celery pool (extra arguments go to ``celery worker``)."""
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
    """Run the scheduler: one BackupSession per cron slot of every BackupConfiguration.

    Any number may run side by side: each slot's session is created once.
    """
    import signal

    from beat.clock import ScaledClock
    from beat.scheduler import Scheduler
    from workers import logs
    from workers.sweeper import StaleSweeper

    env = Env(namespace)
    logging.getLogger().setLevel(logging.INFO)
    logs.install()
    env.store.ping()
    clock = None
    if clock_origin is not None:
        clock = ScaledClock(clock_origin, clock_anchor or time.time(), clock_rate)
    scheduler = Scheduler(env.store, env.queue,
                          clock=clock, namespace=namespace,
                          starting_deadline_s=(env.settings.starting_deadline_s
                                               if starting_deadline_s is None
                                               else starting_deadline_s),
                          orphan_after_s=env.settings.heartbeat_timeout_s,
                          sweeper=StaleSweeper(env.app, env.store, env.settings,
                                               namespace=namespace,
                                               reads_queues=env.settings.store != "kubernetes",
                                               ).maybe_sweep)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.stop())
    signal.signal(signal.SIGINT, lambda *_: scheduler.stop())
    scheduler.run()


def open_repository(env: Env, name: str) -> tuple[Any, Any]:
    """The storage of Repository ``name`` and its cipher, from what its Secret holds."""
    from workers.encryption import PASSWORD_KEY
    from workers.snapshots import read_config, unlock
    from workers.storage import open_storage
    from workflows.resources import Repository, Secret

    repo = env.store.get(Repository, name, env.namespace)
    secret_name = repo.spec.backend.storage_secret_name
    secret = env.store.get(Secret, secret_name, repo.namespace) if secret_name else None
    storage = open_storage(repo, secret, env.settings)
    password = secret.values.get(PASSWORD_KEY) if secret is not None else None
    return storage, unlock(read_config(storage), password, repository=name, secret=secret_name)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


from beat.cli_kube import register  # noqa: E402 - it builds on the group above

register(main, backup)

from beat.cli_flower import flower  # noqa: E402 - it builds on the group above

main.add_command(flower)
