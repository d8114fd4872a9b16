"""The kubectl-plugin verbs Stash users know — ``trigger``, ``pause``, ``resume`` —,
``delete`` as kubectl does it (with either store), and ``watch``, the process that
queues the sessions created on Kubernetes.

``register`` adds them to the ``stashq`` group, at the end of ``beat/cli.py``. The verbs
work with either store; ``watch`` only with ``STASHQ_STORE=kubernetes``, where it is the
one path from a new session to the queue (the CLI and beat only create sessions there).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING

import click

from beat.env import Env, namespace_option, reports_errors
from workflows.errors import InvalidResource, StashQError

if TYPE_CHECKING:
    from workflows.resources import Resource


def register(main: click.Group, backup: click.Command) -> None:
    """Add the verbs to ``stashq``; ``trigger`` is ``backup`` under Stash's name."""
    main.add_command(click.Command(
        "trigger", params=backup.params, callback=backup.callback,
        help="Back up CONFIG now (Stash's instant backup).\n\nCreates a BackupSession; "
             "on Kubernetes the watcher queues it."))
    for command in (pause, resume, delete, watch):
        main.add_command(command)


@click.command()
@click.argument("config")
@namespace_option
@reports_errors
def pause(config: str, namespace: str | None) -> None:
    """Stop scheduling CONFIG (spec.paused: true).

    Running sessions finish.
    """
    set_paused(Env(namespace), config, paused=True)


@click.command()
@click.argument("config")
@namespace_option
@reports_errors
def resume(config: str, namespace: str | None) -> None:
    """Schedule CONFIG again (spec.paused: false).

    Missed slots are not replayed.
    """
    set_paused(Env(namespace), config, paused=False)


def set_paused(env: Env, name: str, *, paused: bool) -> None:
    from workflows.resources import BackupConfiguration

    current = env.store.get(BackupConfiguration, name, env.namespace)
    word = "paused" if paused else "resumed"
    if current.spec.paused == paused:
        click.echo(f"BackupConfiguration/{name} already {word}")
        return
    spec = current.spec.model_copy(update={"paused": paused})
    env.store.apply(current.model_copy(update={"spec": spec}))
    click.echo(f"BackupConfiguration/{name} {word}")


#: kubectl's short names of our kinds (the CRDs' ``shortNames``).
SHORT_NAMES = {"bc": "BackupConfiguration", "bs": "BackupSession", "repo": "Repository",
               "restore": "RestoreSession", "drill": "RestoreDrill"}


@click.command()
@click.argument("kind")
@click.argument("names", nargs=-1, required=True)
@click.option("--cascade", type=click.Choice(["background", "orphan"]), default="background",
              show_default=True, help="background: what it owns goes with it (a "
              "BackupConfiguration's BackupSessions); orphan: that stays.")
@namespace_option
@reports_errors
def delete(kind: str, names: tuple[str, ...], cascade: str, namespace: str | None) -> None:
    """Delete resources of KIND by name, as kubectl delete.

    KIND as kubectl takes it: BackupConfiguration, backupconfigurations or bc. A
    session running when it is deleted is stopped by its worker when its running step
    ends. An object that no longer parses can be deleted too.
    """
    env = Env(namespace)
    cls = kind_named(kind)
    for name in names:
        # NotFound names it, as kubectl's error; a broken object is there, to delete
        with contextlib.suppress(InvalidResource):
            env.store.get(cls, name, env.namespace)
        env.store.delete(cls, name, env.namespace, orphan=cascade == "orphan")
        click.echo(f"{cls.KIND}/{name} deleted")


def kind_named(word: str) -> type[Resource]:
    """The kind a kubectl-style word names; ``StashQError`` listing the kinds if none."""
    from workflows.parsing import KINDS

    by_word = {short: KINDS[k] for short, k in SHORT_NAMES.items()}
    for kind, cls in KINDS.items():
        by_word[kind.lower()] = by_word[plural(kind.lower())] = cls
    found = by_word.get(word.lower())
    if found is None:
        raise StashQError(f'no kind "{word}": one of {", ".join(sorted(KINDS))} '
                          f'(or {", ".join(sorted(SHORT_NAMES))})')
    return found


def plural(word: str) -> str:
    """As the CRDs spell their plurals: repositories, backupsessions, tasks."""
    if word.endswith("y"):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith("s") else "s")


@click.command("watch")
@click.option("-n", "--namespace", default=None,
              help="Watch only this namespace (default: every namespace).")
@reports_errors
def watch(namespace: str | None) -> None:
    """Queue each new session once (Kubernetes).

    Each new BackupSession and RestoreSession, with STASHQ_STORE=kubernetes. Any number
    may run side by side: a session is queued by the one that claims it.
    """
    from beat.dispatch import dispatch
    from beat.watcher import Watcher
    from workers import logs

    env = Env(namespace)
    store = env.store.session_watch()
    if store is None:
        raise StashQError("the watcher needs the Kubernetes store: set STASHQ_STORE=kubernetes "
                          "(without Kubernetes, the CLI and beat queue sessions themselves)")
    logging.getLogger().setLevel(logging.INFO)
    logs.install()
    store.ping()
    watcher = Watcher(store, lambda ref: dispatch(env.app, store, env.settings, ref),
                      namespace=namespace)
    signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
    signal.signal(signal.SIGINT, lambda *_: watcher.stop())
    watcher.run()
