"""Process settings: one frozen object built from the environment at each entry point.

No module reads the environment by itself; ``Settings.from_env(os.environ)`` is called
once by the CLI, the worker and beat, and the result is passed down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from workflows.errors import InvalidResource

PREFIX = "STASHQ_"
STORES = ("redis", "kubernetes")


@dataclass(frozen=True)
class Settings:
    #: Celery broker. Redis, because the worker pool, beat and Flower share it.
    broker_url: str = "redis://127.0.0.1:6379/0"
    #: Where session state and (without Kubernetes) applied resources live.
    redis_url: str = "redis://127.0.0.1:6379/1"
    #: Prometheus Pushgateway; empty disables the metrics step (it logs that it skipped).
    pushgateway_url: str = ""
    #: Where resources and session status live: "redis" (local mode) or "kubernetes".
    store: str = "redis"
    #: kubeconfig file for the "kubernetes" store; empty = in-cluster, then ~/.kube/config.
    kubeconfig: str = ""
    #: Namespace of resources that name none, as kubectl does.
    namespace: str = "default"
    #: Namespace of the Leases that hold the locks with the "kubernetes" store; empty:
    #: ``namespace``. Every worker and beat must name the same one (the chart: its own).
    lease_namespace: str = ""
    #: Above the longest backup, or Redis redelivers a task that is still running.
    visibility_timeout_s: int = 12 * 3600
    #: Bytes read from the dump client per read. A stream holds ~6 of them (the prefetch
    #: queue, the reader's buffer, the chunk in hand): 256 KiB, not 1 MiB, cut a worker's
    #: peak RSS by ~9 MiB with no measurable slowdown (~4 reads per MiB of dump).
    dump_chunk_bytes: int = 256 * 2**10
    #: Bytes per S3 multipart part; memory ≈ part_bytes × (parts_in_flight + 1). S3 allows
    #: 10,000 parts, so 8 MiB caps one stored stream at 80 GiB (≈ 250 GiB of dump text):
    #: raise it for larger databases.
    part_bytes: int = 8 * 2**20
    #: Parts uploaded concurrently: 2 overlaps network with dumping on 2 cores.
    parts_in_flight: int = 2
    #: zstd level when the Function names none. 1, not zstd's default 3: on two cores the
    #: compressor competes with the dump client, and level 3 cost ~25 % more wall time
    #: and twice the memory for no smaller output on dump text (benchmarks/README.md).
    zstd_level: int = 1
    #: zstd worker threads of a single stream: -1 one per core, 0 compress in the stream's
    #: own thread. 0 saved ~15 MiB of a worker's peak RSS and cost 2-8 % of a 256 MiB
    #: backup's wall time on 2 cores (measured); parallel streams always use 0.
    zstd_threads: int = -1
    #: The format a new repository is created in: 3, deduplicating; 2 (or 1: the same,
    #: plain or encrypted by the password) makes one object per stream, as StashQ did
    #: before 3, for a comparison or an older StashQ. Existing repositories keep theirs.
    new_repository_format: int = 3
    #: How long pre-check waits for the database to accept connections (Stash: 300 s).
    db_wait_s: int = 60
    #: How late a missed cron slot may still start (CronJob's startingDeadlineSeconds).
    starting_deadline_s: int = 300
    #: A Running session whose worker stopped reporting for this long is stale. Five
    #: heartbeat intervals and more than a queue's usual wait between two steps: the wait
    #: counts too, and a session found stale is re-queued (harmless) or failed.
    heartbeat_timeout_s: int = 300
    #: Seconds between a running step's heartbeats (``status.heartbeatAt``): each is one
    #: status patch, so not too often; well under ``heartbeat_timeout_s``.
    heartbeat_interval_s: float = 30.0
    #: Times a stale session is queued again before it is failed. Steps are idempotent,
    #: so a re-run after a killed worker finishes the session; the bound stops a backup
    #: that kills its worker every time (out of memory, say) from looping for ever.
    stale_requeue_limit: int = 2
    #: Seconds between sweeps for stale sessions, in every worker and every beat. Each
    #: sweep lists the sessions (one round trip); 0: no periodic sweeps, only the one
    #: each worker makes at start-up.
    stale_sweep_interval_s: float = 60.0
    #: A session still Pending this long after it was queued is looked at by the sweep:
    #: if its message is gone from the broker (a Redis without persistence restarted) it
    #: is queued again (within ``stale_requeue_limit``), if the message is still queued
    #: its status says it waits for a worker. Above a busy pool's usual queueing delay.
    pending_timeout_s: float = 180.0
    #: Times a step is retried after a transient failure (S3 or the state store
    #: unreachable, 5xx, a busy repository lock) before the session fails.
    retry_limit: int = 5
    #: Seconds before the first retry; doubled for each next one (30, 60, 120, ...).
    retry_base_s: float = 30.0
    #: Seconds between two retries at most: with the defaults the retries of a step
    #: span about 15 minutes, the length of a typical S3 or network maintenance.
    retry_max_delay_s: float = 600.0
    #: Seconds a repository lock outlives a holder that stopped renewing it (a killed
    #: worker): others wait at most this long. Renewed every third of it.
    lock_lease_s: float = 60.0
    #: Attempts per S3 request inside botocore (its "standard" mode, first one included)
    #: before the error reaches the step, whose own retries take over.
    s3_max_attempts: int = 4
    #: Finished RestoreSessions kept per target AppBinding; older ones are deleted when
    #: a restore finishes (Stash has no such limit and kept them all: they piled up).
    #: BackupSessions follow their configuration's ``backupHistoryLimit``.
    restore_history_limit: int = 5
    #: Test only, empty in production: ``<point>:<seconds>`` makes the dump step sleep at
    #: a named point (``before_upload``, ``before_manifest``) so that fault tests can kill
    #: a worker there. See ``workers/pauses.py``.
    pause_at: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.type in ("int", int, "float", float):
                number = float if f.type in ("float", float) else int
                try:
                    values[f.name] = number(raw)
                except ValueError:
                    what = "a number" if number is float else "an integer"
                    raise InvalidResource(f'"{raw}" is not {what}',
                                          source="environment",
                                          path=PREFIX + f.name.upper()) from None
            else:
                values[f.name] = raw
        if "redis_url" not in values and "broker_url" in values:
            values["redis_url"] = values["broker_url"]
        if values.get("store", "redis") not in STORES:
            raise InvalidResource(f'"{values["store"]}" is not a store (expected '
                                  f'{" or ".join(STORES)})', source="environment",
                                  path=PREFIX + "STORE")
        return cls(**values)  # type: ignore[arg-type]
