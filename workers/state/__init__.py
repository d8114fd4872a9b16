"""Where resources and session status live: Redis without Kubernetes (``redis.py``), the
API server in a cluster (``kube.py``). ``open_store`` is the one place that chooses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workflows.settings import Settings

if TYPE_CHECKING:
    from workers.state.kube import KubeStore
    from workers.state.redis import RedisStore


def open_store(settings: Settings) -> RedisStore | KubeStore:
    """The store ``settings.store`` names (``redis`` or ``kubernetes``)."""
    if settings.store == "kubernetes":
        from workers.state.kube import KubeStore  # the kubernetes client loads only here

        return KubeStore.from_kubeconfig(settings.kubeconfig,
                                         settings.lease_namespace or settings.namespace)
    from workers.state.redis import RedisStore

    return RedisStore.from_url(settings.redis_url)
