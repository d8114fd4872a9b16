# syntax=docker/dockerfile:1
# StashQ image: the `stashq` command (worker, beat, watch, flower) with the database
# clients the steps spawn. Debian bookworm, because its mariadb-client ships
# mariadb-dump, mariadb and the mysqldump/mysql names the MySQL and Percona profiles use.
#
#   docker build -t stashq:0.1.0 .
#   docker run --rm stashq:0.1.0 stashq --help
#
# Two stages: the first builds a virtualenv with StashQ and its dependencies (pip, wheel
# caches and sources stay there); the second copies only that virtualenv onto the same
# Python base, adds the client tools and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/stashq
WORKDIR /src
# Metadata first: the dependency layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY workflows/ workflows/
COPY workers/ workers/
COPY beat/ beat/
RUN /opt/stashq/bin/pip install --no-compile . \
 && /opt/stashq/bin/python -m compileall -q /opt/stashq/lib

FROM ${PYTHON_IMAGE}
# mariadb-client: mariadb-dump, mariadb, mysqldump, mysql (logical backup and restore).
# mariadb-backup: mariadb-backup and mbstream (physical Galera backups); galera-arbitrator-4:
# garbd (joins a Galera cluster to receive a State Snapshot Transfer); mariadb-server-core:
# mariadbd, the throw-away server a physical snapshot's restore drill starts (no service).
# tini: PID 1 that forwards SIGTERM to stashq and reaps orphaned dump clients.
# Versions are not pinned (DL3008): bookworm's point releases carry the security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      galera-arbitrator-4 \
      mariadb-backup \
      mariadb-client \
      mariadb-server-core \
      tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 stashq \
 && useradd --system --uid 10001 --gid stashq --home-dir /tmp --shell /usr/sbin/nologin stashq
COPY --from=build /opt/stashq /opt/stashq
# The root filesystem may be read-only (the chart mounts /tmp): no bytecode written at
# run time, logs unbuffered, HOME and TMPDIR on /tmp where the 0600 defaults files go.
ENV PATH=/opt/stashq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
USER 10001:10001
WORKDIR /tmp
# Flower's port (`stashq flower --address 0.0.0.0`); the other commands listen on nothing.
EXPOSE 5555
# The command is given in full (the chart passes `stashq worker -c N -Q ...` as args), so
# the image also runs `celery -A workers.entry ...` for inspection.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["stashq", "--help"]
