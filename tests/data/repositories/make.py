"""Write the repositories of ``tests/data/repositories/`` with the StashQ of this checkout.

They are fixtures of the formats a StashQ once wrote: the tests restore and check them
with today's code, so a change of the repository code cannot silently stop reading what
users already have. Run it only to add a fixture of a new format, never to "refresh"
one (that would test nothing):

    .venv/bin/python -m tests.data.repositories.make OUTPUT_DIR

It starts MariaDB and Redis on free loopback ports, a real ``stashq worker``, loads the
deterministic sample database, and takes one snapshot into each local repository:
``plain-logical``, ``encrypted-logical``, ``plain-physical``, ``encrypted-physical``.
``expected.json`` holds what the sample database looks like (``describe``) and the
password of the encrypted ones (a fixture's, not a secret).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.compare import describe
from devstack.sample import create_sample
from devstack.servers import MariaDBServer, RedisServer, free_port

STASHQ = str(Path(sys.executable).with_name("stashq"))
PASSWORD = "fixture password, not a secret"
DATABASE = "shop"
KINDS = {"logical": "", "physical": "mariadb-physical-backup"}


def resources(name: str, mariadb: MariaDBServer, path: Path, task: str,
              encrypted: bool) -> str:
    password = f', RESTIC_PASSWORD: "{PASSWORD}"' if encrypted else ""
    task_spec = f"{{name: {task}}}" if task else \
        f"{{params: [{{name: databases, value: {DATABASE}}}]}}"
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: {name}-repo}}
stringData: {{AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: ""{password}}}
---
apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {{name: {name}}}
spec:
  backend: {{local: {{mountPath: "{path}"}}, storageSecretName: {name}-repo}}
---
apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {{name: {name}}}
spec:
  schedule: "0 3 * * *"
  repository: {{name: {name}}}
  target: {{ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}}}
  task: {task_spec}
"""


def stashq(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([STASHQ, *args], env=env, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"stashq {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="stashq-fixtures-"))
    mariadb, redis = MariaDBServer(work / "mariadb", free_port()), \
        RedisServer(work / "redis", free_port())
    mariadb.start()
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    env |= {"STASHQ_BROKER_URL": redis.url_for(0), "STASHQ_REDIS_URL": redis.url_for(1),
            "TMPDIR": str(work)}
    worker = subprocess.Popen([STASHQ, "worker", "-c", "1"], env=env,
                              stdout=(work / "worker.log").open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with mariadb.connect() as conn:
            create_sample(conn, DATABASE, customers=20, orders_per_customer=3)
            expected = describe(conn, DATABASE)
        docs = [f"""apiVersion: v1
kind: Secret
metadata: {{name: db-auth}}
stringData: {{username: root, password: ""}}
---
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {{name: db}}
spec:
  type: kubedb.com/mariadb
  version: "10.11"
  clientConfig: {{url: "tcp(127.0.0.1:{mariadb.port})/"}}
  secret: {{name: db-auth}}
"""]
        names = []
        for encrypted in (False, True):
            for kind, task in KINDS.items():
                name = f"{'encrypted' if encrypted else 'plain'}-{kind}"
                names.append(name)
                docs.append(resources(name, mariadb, out / name, task, encrypted))
        (work / "setup.yaml").write_text("---\n".join(docs))
        stashq(env, "apply", "-f", str(work / "setup.yaml"))
        for name in names:
            print(stashq(env, "backup", name, "--wait", "--timeout", "600"), end="")
        (out / "expected.json").write_text(json.dumps(
            {"database": DATABASE, "password": PASSWORD, "describe": expected},
            indent=1, default=str) + "\n")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        redis.stop()
        mariadb.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
