"""The module-level app for ``celery -A workers.entry`` (worker, Flower, inspect).

Building it reads the environment once; nothing else in the package does.
"""

import os

from workers.app import create_app
from workflows.settings import Settings

app = create_app(Settings.from_env(os.environ))
