"""``stashq``: apply resources, trigger backups and restores, inspect, run a worker.

One handler turns every StashQError into ``error: <message>`` on stderr and the
error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from beat.cli_drills import verify
from beat.cli_flower import flower
from beat.cli_kube import register
from beat.env import Env, namespace_option, reports_errors
from beat.output import human_bytes, print_items, print_table, short_time, started_at
from workflows.errors import IntegrityError, InvalidResource, StashQError
from workflows.phases import pending
from workflows.snapshots import describe_format

# Each command imports what it uses: ``stashq --help`` loads neither pydantic, Redis nor
# Celery, and only the commands that queue a session load the worker's steps.
if TYPE_CHECKING:
    from workers.repository import Repository as RepositoryObject
    from workflows.resources.restore import PointInTime

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
    owner = env.store.get(BackupConfiguration, config, env.namespace)
    now = int(time.time())
    session = None
    while session is None:  # two triggers in one second get consecutive names
        session = new_backup_session(env.store, config, env.namespace, now, owner=owner)
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
@click.option("--to-time", default=None,
              help="Restore to this time (RFC 3339 with its zone, e.g. 2026-12-06T10:15:00Z; "
                   "to the second): the newest snapshot before it, then the archived binlog "
                   "up to it (spec.pointInTime.time).")
@click.option("--to-gtid", default=None,
              help="Restore up to and including this transaction (domain-server-sequence, "
                   "e.g. 0-1-42; spec.pointInTime.gtid).")
@click.option("--to-position", default=None, metavar="FILE:POS",
              help="Restore up to this binlog position, the end of a transaction (e.g. "
                   "mysql-bin.000002:1352; spec.pointInTime.file + position).")
@click.option("--wait/--no-wait", default=False,
              help="Wait for the session to finish, showing its progress.")
@click.option("--timeout", "timeout_s", default=24 * 3600, show_default=True,
              help="Seconds --wait waits at most (the session keeps running).")
@namespace_option
@reports_errors
def restore(repository: str, target: str, snapshot: str, source: str | None, database: str,
            overwrite: bool, task_name: str | None, to_time: str | None, to_gtid: str | None,
            to_position: str | None, wait: bool, timeout_s: int, namespace: str | None) -> None:
    """Restore a snapshot: a RestoreSession, checked, then queued.

    The Repository, the AppBinding and the snapshot are checked first; if one is
    missing (or latest is ambiguous) nothing is created. A target database that holds
    tables is refused at pre-check unless --overwrite. With --to-time, --to-gtid or
    --to-position, the point is checked against the recoverable window first, and refused naming it.
    """
    from beat.progress import wait_for
    from workers.context import SessionRef
    from workflows.recovery import point_of
    from workflows.resources import AppBinding
    from workflows.restores import source_of

    env = Env(namespace)
    repo = open_repository(env, repository)
    env.store.get(AppBinding, target, env.namespace)
    point = point_spec(to_time, to_gtid, to_position)
    if point is not None and snapshot != "latest":
        raise InvalidResource("--snapshot and --to-time/--to-gtid/--to-position exclude each "
                              "other: a restore to a point takes the newest snapshot before it")
    chosen = (repo.resolve_snapshot(snapshot, source) if point is None else
              repo.find_snapshot(repo.plan_recovery(point_of(point), source).snapshot))
    assert chosen is not None
    params = [{"name": "database", "value": database}] if database else []
    spec = {"repository": {"name": repository},
            "target": {"ref": {"name": target}, "overwrite": overwrite,
                       "rules": [{"sourceHost": source, "snapshots": [chosen.id]}]},
            "task": {"name": task_name, "params": params},
            **({"pointInTime": point.model_dump(mode="json", by_alias=True,
                                                exclude_none=True)} if point else {})}
    name = create_restore_session(env, target, spec)
    ref = SessionRef("RestoreSession", env.namespace, name)
    env.queue(ref)
    click.echo(f"snapshot {chosen.id} of {source_of(chosen)}")
    click.echo(f"RestoreSession/{name} created")
    if wait:
        wait_for(env.store, ref, timeout_s, env.stalled)


def point_spec(to_time: str | None, to_gtid: str | None,
               to_position: str | None = None) -> PointInTime | None:
    """``--to-time`` / ``--to-gtid`` / ``--to-position`` as a RestoreSession's
    ``spec.pointInTime``."""
    from pydantic import ValidationError

    from workflows.resources.restore import PointInTime

    if to_time is None and to_gtid is None and to_position is None:
        return None
    file, position = split_position(to_position) if to_position is not None else (None, None)
    try:
        return PointInTime(time=to_time, gtid=to_gtid, file=file,  # type: ignore[arg-type]
                           position=position)
    except ValidationError as e:
        reason = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
        raise InvalidResource(f"--to-time/--to-gtid/--to-position: {reason}") from None


def split_position(text: str) -> tuple[str, int]:
    """``mysql-bin.000002:1352`` → ("mysql-bin.000002", 1352)."""
    file, _, position = text.rpartition(":")
    if not file or not position.isdigit():
        raise InvalidResource(f'--to-position: "{text}" is not FILE:POS (a binlog file and a '
                              "byte position in it, e.g. mysql-bin.000002:1352)")
    return file, int(position)


@main.command()
@click.argument("configuration")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the run to finish and show where the archive stands.")
@click.option("--timeout", "timeout_s", default=600, show_default=True,
              help="Seconds --wait waits at most.")
@namespace_option
@reports_errors
def archive(configuration: str, wait: bool, timeout_s: int, namespace: str | None) -> None:
    """Archive a configuration's binlog now.

    Besides the runs beat starts every spec.binlogArchive.intervalSeconds: everything
    the server wrote since the last run, up to its current end.
    """
    from workers.steps.archive_binlogs import TASK
    from workflows.resources import BackupConfiguration

    env = Env(namespace)
    config = env.store.get(BackupConfiguration, configuration, env.namespace)
    if config.spec.binlog_archive is None or not config.spec.binlog_archive.enabled:
        raise InvalidResource(f'BackupConfiguration "{configuration}" does not archive its '
                              "binlog: set spec.binlogArchive")
    result = env.app.send_task(TASK, args=(f"{env.namespace}/{configuration}",
                                           int(time.time())))
    click.echo(f"binlog archive run of {configuration} queued")
    if not wait:
        return
    try:
        result.get(timeout=timeout_s, propagate=True)
    except StashQError:
        raise
    except Exception as e:
        raise StashQError(f"the archive run failed: {type(e).__name__}: {e}") from None
    status = env.store.get(BackupConfiguration, configuration, env.namespace).status
    click.echo(describe_archive(status.get("binlogArchive") or {}))


def describe_archive(status: Mapping[str, Any]) -> str:
    """A few lines on where a binlog archive stands."""
    if status.get("phase") == "Failed":
        return f"archive failed: {status.get('reason')}"
    position = status.get("position") or {}
    window = status.get("window") or {}
    lines = [f"archived through {position.get('gtid') or 'nothing yet'} "
             f"({position.get('file')}:{position.get('position')} on {position.get('server')})",
             f"last archived transaction at {status.get('lastArchivedEventTime') or 'none'}",
             "recoverable " + (f"from {window.get('from')} to {window.get('to')}" if window
                               else "window: none yet (no snapshot with binlog coordinates)")]
    gaps = status.get("gaps") or ()
    lines += [f"gap: {gap.get('reason')} (detected {gap.get('detectedAt')})" for gap in gaps]
    if (status.get("gapCount") or 0) > len(gaps):
        lines.append(f"{status['gapCount']} gaps in all; the {len(gaps)} newest are listed")
    return "\n".join(lines)


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
             for s in sorted(env.store.list(cls, env.namespace), key=started_at)]
    if output != "table":
        print_items([s.model_dump(mode="json", by_alias=True, exclude_none=True) for s in found],
              output)
        return
    rows = [(s.kind, s.name, s.status.get("phase", "Unknown"),
             short_time(s.status.get("startTime")), s.status.get("sessionDuration", ""),
             s.status.get("reason", "")) for s in found]
    print_table(("KIND", "NAME", "PHASE", "STARTED (UTC)", "DURATION", "REASON"), rows)


@main.command()
@click.argument("repository")
@output_option
@namespace_option
@reports_errors
def snapshots(repository: str, output: str, namespace: str | None) -> None:
    """List the snapshots in REPOSITORY.

    Manifests only: the data of an unfinished backup never shows. The repository's
    format is said on stderr, before the table.
    """
    env = Env(namespace)
    repo = open_repository(env, repository)
    found = repo.list_snapshots()
    if output != "table":
        print_items([s.model_dump(mode="json", by_alias=True)
                     | {"sizeBytes": s.size_bytes, "rawBytes": s.raw_bytes} for s in found],
                    output)
        return
    click.echo(f'Repository "{repository}": {describe_format(repo.config)}', err=True)
    rows = [(s.id, s.finished_at.strftime("%Y-%m-%d %H:%M:%S"), s.engine,
             human_bytes(s.raw_bytes), human_bytes(s.size_bytes), human_bytes(s.added_bytes),
             ",".join(s.databases)) for s in found]
    print_table(("ID", "TIME (UTC)", "ENGINE", "DUMP", "STORED", "ADDED", "DATABASES"), rows)


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
    repo = open_repository(env, repository)
    click.echo(f'Repository "{repository}": {describe_format(repo.config)}')
    report = repo.check(read_data=read_data)
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for orphan in report.orphans:
        click.echo(f"orphan: {orphan} (no manifest; prune removes it)")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    click.echo(f"{report.snapshots} snapshot(s), {report.streams} stream(s), "
               f"{human_bytes(report.bytes_read)} read: {verdict}")
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
    from workers.steps.archive_binlogs import TASK as ARCHIVE_TASK
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
                                               namespace=namespace,
                                               reads_queues=env.queues_sessions,
                                               ).maybe_sweep,
                          archive=lambda ref, slot: env.app.send_task(
                              ARCHIVE_TASK, args=(ref, slot)),
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


register(main, backup)  # the kubectl-plugin verbs and watch, built on the group above
main.add_command(flower)
main.add_command(verify)
