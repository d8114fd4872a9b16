"""A session's context resolves its Task the way Stash would: Stash's
``spec.target.replicas`` sets the number of per-replica restore steps."""

from __future__ import annotations

from workers.context import SessionRef, StepContext
from workers.state.redis import RedisStore
from workflows.parsing import parse_resource
from workflows.settings import Settings

BINDING = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
           "metadata": {"name": "db"},
           "spec": {"type": "kubedb.com/mariadb", "secret": {"name": "auth"},
                    "clientConfig": {"url": "tcp(127.0.0.1:3306)/"}}}


def restore_session(replicas: int | None, params: list[dict[str, str]]) -> dict[str, object]:
    target: dict[str, object] = {"ref": {"name": "db"}}
    if replicas is not None:
        target["replicas"] = replicas
    return {"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
            "metadata": {"name": f"r-{replicas or 0}-{len(params)}"},
            "spec": {"repository": {"name": "repo"}, "target": target,
                     "task": {"name": "mariadb-galera-restore", "params": params}}}


def test_target_replicas_sets_the_fan_out(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    store.apply(parse_resource(BINDING))
    cases = [(None, [], "3"), (5, [], "5"), (5, [{"name": "replicas", "value": "2"}], "2")]
    for replicas, params, expected in cases:
        session = parse_resource(restore_session(replicas, params))
        store.create(session)
        ctx = StepContext(Settings(), store, SessionRef("RestoreSession", "default",
                                                        session.name))
        fanned = [s for s in ctx.plan.steps if "replicas" in s.params]
        assert [s.params["replicas"] for s in fanned] == [expected], (replicas, params)
