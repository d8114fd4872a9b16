"""``stashq flower``: Flower, the live view of the queue, on the configured broker.

Flower is a ``celery`` subcommand (a plugin); running it on the app ``stashq worker``
builds (``workers.app.create_app``) gives it the same broker, from
``STASHQ_BROKER_URL``, and the same settings, so it is ``celery -A workers.entry flower``
without the module that reads the environment at import. Flower only sees task events
sent while it runs; workers send them (``stashq worker`` passes ``-E``).

Flower's other options may follow as arguments, or come as ``FLOWER_*`` variables.
Secrets belong in the variables (``FLOWER_BASIC_AUTH=user:password``): arguments are
visible to every process on the host. This command needs no state store, so Flower runs
without Kubernetes credentials.
"""

from __future__ import annotations

import os
import sys

import click

from beat.env import reports_errors
from workflows.settings import Settings

#: Flower's own default port.
DEFAULT_PORT = 5555


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@reports_errors
def flower(address: str, port: int, flower_args: tuple[str, ...]) -> None:
    """Run Flower, the live view of the queue.

    Extra arguments go to "celery flower"; secrets such as FLOWER_BASIC_AUTH belong in
    the environment, not in arguments.
    """
    from workers.app import create_app

    app = create_app(Settings.from_env(os.environ))
    exit_code = app.start(["flower", f"--address={address}", f"--port={port}", *flower_args])
    if exit_code:
        sys.exit(exit_code)
