"""``stashq verify``: one restore drill by hand, in this process.

The same drill a RestoreDrill runs on its schedule (``workers/drill_runs.py``): restore
the snapshot into scratch databases on ``--target``, check every table's rows against
what the backup counted while dumping, run the assertions (``--drill`` lends its
own), drop the scratch databases. A physical snapshot is prepared and started as a
throw-away server on this host instead (``workers/physical_drills.py``; ``--target``
is then not written to). Needs the database clients (and for a physical snapshot the
backup tool and the server) on this host, as a worker does. Exits 7 if the drill failed.
"""

from __future__ import annotations

import click

from beat.env import Env, namespace_option, reports_errors
from workflows.errors import IntegrityError, InvalidResource

#: Prefix of the scratch databases of a drill by hand.
VERIFY_PREFIX = "stashq_verify_"


@click.command()
@click.argument("snapshot")
@click.option("--target", default=None,
              help="AppBinding of the scratch server (default: the --drill's).")
@click.option("--repository", default=None,
              help="Repository holding the snapshot (default: the --drill's).")
@click.option("--drill", "drill_name", default=None,
              help="RestoreDrill whose scratch target, prefix and assertions to use.")
@click.option("--prefix", default=None,
              help=f"Scratch database name prefix (default: the --drill's, or {VERIFY_PREFIX}).")
@namespace_option
@reports_errors
def verify(snapshot: str, target: str | None, repository: str | None, drill_name: str | None,
           prefix: str | None, namespace: str | None) -> None:
    """Check that SNAPSHOT restores, as a drill does.

    Every table's row count and digest against what the backup counted while dumping,
    then the drill's assertions; the scratch databases are dropped. Exits 7 if anything
    differs.
    """
    from workers.drill_runs import drill_one, open_repo, scratch_of
    from workflows.resources import RestoreDrill
    from workflows.restores import source_of

    env = Env(namespace)
    drill = env.store.get(RestoreDrill, drill_name, env.namespace) if drill_name else None
    target = target or (drill.spec.scratch.ref.name if drill else None)
    repository = repository or (drill.spec.repository.name if drill else None)
    if target is None or repository is None:
        raise InvalidResource("name --target and --repository, or a --drill that names them")
    prefix = prefix or (drill.spec.scratch.database_prefix if drill else VERIFY_PREFIX)
    repo = open_repo(env.store, env.settings, repository, env.namespace)
    chosen = repo.resolve_snapshot(snapshot)
    scratch = scratch_of(env.store, target, env.namespace, prefix)
    source = source_of(chosen)
    where = ("a throw-away server on this host" if chosen.kind == "physical" else
             f"{', '.join(prefix + d for d in chosen.databases)} on AppBinding {target}")
    click.echo(f"snapshot {chosen.id} of {source.configuration or source.target}: restoring "
               f"into {where}")
    report = drill_one(env.store, repo, chosen, scratch, drill.spec.assertions if drill else (),
                       source.configuration or source.target, env.namespace)
    click.echo(f"{report.tables} table(s), {report.rows} row(s) checked in "
               f"{report.seconds:.1f} s: {'passed' if report.passed else 'FAILED'}")
    for failure in report.failures:
        click.echo(f"failed: {failure}")
    for note in report.notes:
        click.echo(f"note: {note}")
    if not report.passed:
        raise IntegrityError(f'snapshot "{chosen.id}" failed its drill')
