"""The kubectl-plugin verbs Stash users know — ``trigger``, ``pause``, ``resume`` — and
``watch``, the process that queues the sessions created on Kubernetes.

``register`` adds them to the ``stashq`` group, at the end of ``beat/cli.py``. The verbs
work with either store; ``watch`` only with ``STASHQ_STORE=kubernetes``, where it is the
one path from a new session to the queue (the CLI and beat only create sessions there).
"""

from __future__ import annotations

import logging
import signal

import click

from beat.env import Env, namespace_option, reports_errors
from workflows.errors import StashQError


def register(main: click.Group, backup: click.Command) -> None:
    """Add the verbs to ``stashq``; ``trigger`` is ``backup`` under Stash's name."""
    main.add_command(click.Command(
        "trigger", params=backup.params, callback=backup.callback,
        help="Back up CONFIG now (Stash's instant backup).\n\nCreates a BackupSession; "
             "on Kubernetes the watcher queues it."))
    for command in (pause, resume, watch):
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
