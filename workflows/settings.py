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
    #: Above the longest backup, or Redis redelivers a task that is still running.
    visibility_timeout_s: int = 12 * 3600
    #: Bytes read from the dump client per read: large reads keep syscalls few.
    dump_chunk_bytes: int = 1 * 2**20
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
    #: How long pre-check waits for the database to accept connections (Stash: 300 s).
    db_wait_s: int = 60
    #: How late a missed cron slot may still start (CronJob's startingDeadlineSeconds).
    starting_deadline_s: int = 300
    #: A Running session whose worker stopped reporting for this long is stale.
    heartbeat_timeout_s: int = 300

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise InvalidResource(f'"{raw}" is not an integer',
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
