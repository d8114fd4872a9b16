"""What a restore takes and where it writes, decided over values.

``latest`` is the newest snapshot of the restore's *source*, never simply the newest in
the repository: several BackupConfigurations (and AppBindings) may share a repository,
and the newest of them all is as often as not another database's. A snapshot's source
is the BackupConfiguration that took it and the AppBinding it was taken from, as its
manifest records them (a manifest from before the configuration was recorded: its
session name ``<config>-<unix time>`` tells, as retention reads it). A restore names
its source in ``spec.target.rules[].sourceHost`` (``stashq restore --source``) by either
name, and may leave it out only when the repository holds one source; otherwise it is
refused, listing each source with its newest snapshot.

A restore writes into databases: a one-database snapshot into its own or another
(param ``database``), a multi-database snapshot into each of its own. A database that
exists and holds tables is overwritten only if the restore says so
(``spec.target.overwrite``, ``stashq restore --overwrite``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from workflows.errors import InvalidResource, NotFound, PrecheckFailed
from workflows.schedule import configuration_of_session
from workflows.snapshots import Snapshot

#: Where a restore names its source, and the CLI option that sets it.
SOURCE_FIELD = "spec.target.rules[].sourceHost"
SOURCE_OPTION = "stashq restore --source"
#: Where a restore says that existing tables may be replaced.
OVERWRITE_FIELD = "spec.target.overwrite"
OVERWRITE_OPTION = "stashq restore --overwrite"


@dataclass(frozen=True)
class Source:
    """Where snapshots come from: an AppBinding, backed up by a BackupConfiguration
    (None: a manifest that does not tell)."""

    target: str
    configuration: str | None

    def __str__(self) -> str:
        if self.configuration is None:
            return f"AppBinding {self.target}"
        return f"{self.configuration} (AppBinding {self.target})"

    def named(self, name: str) -> bool:
        """Whether ``name`` (a BackupConfiguration's or an AppBinding's) means this source."""
        return name in (self.configuration, self.target)


def source_of(snapshot: Snapshot) -> Source:
    configuration = snapshot.configuration or configuration_of_session(snapshot.session)
    return Source(snapshot.target, configuration)


def newest_by_source(snapshots: Iterable[Snapshot]) -> dict[Source, Snapshot]:
    """Each source's newest snapshot (by finish time; ties by id)."""
    newest: dict[Source, Snapshot] = {}
    for snapshot in snapshots:
        source = source_of(snapshot)
        known = newest.get(source)
        if known is None or (snapshot.finished_at, snapshot.id) > (known.finished_at, known.id):
            newest[source] = snapshot
    return newest


def describe_sources(newest: Mapping[Source, Snapshot]) -> str:
    """``nightly (AppBinding db) → nightly-1795754381 (2026-11-27 03:00:05 UTC); …``,
    newest first."""
    ordered = sorted(newest.items(), key=lambda item: (item[1].finished_at, item[1].id),
                     reverse=True)
    return "; ".join(f"{source} → {snapshot.id} "
                     f"({snapshot.finished_at.strftime('%Y-%m-%d %H:%M:%S')} UTC)"
                     for source, snapshot in ordered)


def latest_snapshot(snapshots: Iterable[Snapshot], source: str | None, *,
                    repository: str) -> Snapshot:
    """The newest snapshot of ``source`` (None: of the repository's only source).

    ``NotFound`` if there is none; ``InvalidResource`` if more than one source fits.
    """
    newest = newest_by_source(snapshots)
    if not newest:
        raise NotFound(f'Repository "{repository}" has no snapshots')
    fitting = {k: v for k, v in newest.items() if source is None or k.named(source)}
    if not fitting:
        raise NotFound(f'Repository "{repository}" has no snapshot of "{source}"; it holds '
                       f"snapshots of: {describe_sources(newest)}")
    if len(fitting) > 1:
        which = f'sources named "{source}"' if source else "sources"
        raise InvalidResource(f'Repository "{repository}" holds snapshots of {len(fitting)} '
                              f'{which}, so "latest" is ambiguous: name the source by its '
                              f"BackupConfiguration in {SOURCE_FIELD} ({SOURCE_OPTION}). "
                              f"Newest of each: {describe_sources(fitting)}")
    return next(iter(fitting.values()))


def check_source(snapshot: Snapshot, source: str | None) -> None:
    """Refuse a snapshot named by id that is not of the source the restore names."""
    if source is not None and not source_of(snapshot).named(source):
        raise InvalidResource(f'snapshot "{snapshot.id}" was taken from '
                              f'{source_of(snapshot)}, not from "{source}"', path=SOURCE_FIELD)


def target_database(snapshot: Snapshot, wanted: str | None) -> str | None:
    """The one database a one-database snapshot is restored into (``wanted``, the param
    ``database``, or its own); None for a multi-database snapshot, which recreates its
    own databases."""
    if len(snapshot.databases) == 1:
        return wanted or snapshot.databases[0]
    if wanted:
        raise InvalidResource(f'snapshot "{snapshot.id}" holds {len(snapshot.databases)} '
                              "databases; it cannot be restored under one new name",
                              path="spec.task.params.database")
    return None


def written_databases(snapshot: Snapshot, wanted: str | None) -> tuple[str, ...]:
    """Every database the restore of ``snapshot`` writes into (``wanted``: see
    ``target_database``)."""
    database = target_database(snapshot, wanted)
    return snapshot.databases if database is None else (database,)


def refuse_overwrite(tables: Mapping[str, int], *, target: str, overwrite: bool,
                     renamable: bool) -> None:
    """``PrecheckFailed`` if a database the restore writes holds tables (``tables``: how
    many each holds; absent or 0: new or empty) and the restore does not say to
    overwrite. ``renamable``: a one-database snapshot, which another name would keep
    away from them."""
    occupied = sorted((name, count) for name, count in tables.items() if count > 0)
    if not occupied or overwrite:
        return
    held = ", ".join(f'"{name}" ({count} table(s))' for name, count in occupied)
    elsewhere = ("restore under another name (param database, stashq restore --database "
                 "NAME)" if renamable else "restore into another server")
    raise PrecheckFailed(f'AppBinding "{target}": database(s) {held} exist and hold tables '
                         "that the restore would overwrite; nothing was touched. To replace "
                         f"them, set {OVERWRITE_FIELD}: true ({OVERWRITE_OPTION}); to keep "
                         f"them, {elsewhere}")
