"""YAML for a user's resources, written the way the README tells users to write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from devstack.servers import MariaDBServer, S3Server


def secret(name: str, **values: str) -> str:
    lines = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n{lines}"


def appbinding(name: str, mariadb: MariaDBServer, secret_name: str,
               engine: str = "mariadb") -> str:
    return f"""apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {{name: {name}}}
spec:
  type: kubedb.com/{engine}
  version: "10.11"
  clientConfig: {{url: "tcp(127.0.0.1:{mariadb.port})/"}}
  secret: {{name: {secret_name}}}
"""


def s3_repository(name: str, s3: S3Server, bucket: str, secret_name: str,
                  prefix: str = "backups/demo") -> str:
    return f"""apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {{name: {name}}}
spec:
  backend:
    s3: {{endpoint: "{s3.endpoint}", bucket: {bucket}, prefix: {prefix}, region: us-east-1}}
    storageSecretName: {secret_name}
"""


def backup_configuration(name: str, repository: str, target: str, databases: str,
                         task: str | None = None) -> str:
    task_line = f"  task:\n    name: {task}\n" if task else "  task:\n"
    return f"""apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {{name: {name}}}
spec:
  schedule: "0 3 * * *"
  repository: {{name: {repository}}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: {target}}}
{task_line}    params:
      - {{name: databases, value: {json.dumps(databases)}}}
"""


def restore_session(name: str, *, target: dict[str, Any] | None = None,
                    task: dict[str, Any] | None = None) -> str:
    """RestoreSession ``name``: Repository "repo" into AppBinding "db", with ``target``
    fields besides ``ref`` (rules, overwrite) and a ``task``, if given."""
    ref = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "db"}
    spec: dict[str, Any] = {"repository": {"name": "repo"},
                            "target": {"ref": ref, **(target or {})}}
    if task:
        spec["task"] = task
    return yaml.safe_dump({"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
                           "metadata": {"name": name}, "spec": spec}, sort_keys=False)


def standard_setup(path: Path, s3: S3Server, mariadb: MariaDBServer, bucket: str,
                   database: str, *, db_password: str = "", s3_secret: str | None = None,
                   repository_password: str | None = None) -> Path:
    """Secrets, AppBinding "db", Repository "repo" on S3, BackupConfiguration "nightly";
    with ``repository_password``, the repository is encrypted (``RESTIC_PASSWORD``)."""
    encryption = {} if repository_password is None else {"RESTIC_PASSWORD": repository_password}
    docs = [
        secret("db-auth", username="root", password=db_password),
        secret("s3-auth", AWS_ACCESS_KEY_ID=s3.access_key,
               AWS_SECRET_ACCESS_KEY=s3_secret or s3.secret_key, **encryption),
        appbinding("db", mariadb, "db-auth"),
        s3_repository("repo", s3, bucket, "s3-auth"),
        backup_configuration("nightly", "repo", "db", database),
    ]
    path.write_text("---\n".join(docs))
    return path


def local_setup(mariadb: MariaDBServer, database: str, repo_dir: Path,
                namespace: str) -> list[dict[str, Any]]:
    """Raw resources of one backup of ``database`` into a local repository at ``repo_dir``:
    for tests that apply them to a store directly."""
    meta = {"namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-auth", **meta},
         "stringData": {"username": "root", "password": ""}},
        {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
         "metadata": {"name": "db", **meta},
         "spec": {"type": "kubedb.com/mariadb", "version": "10.11",
                  "clientConfig": {"url": f"tcp(127.0.0.1:{mariadb.port})/"},
                  "secret": {"name": "db-auth"}}},
        {"apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
         "metadata": {"name": "repo", **meta},
         "spec": {"backend": {"local": {"mountPath": str(repo_dir)}}}},
        {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
         "metadata": {"name": "nightly", **meta},
         "spec": {"schedule": "0 3 * * *", "repository": {"name": "repo"},
                  "target": {"ref": {"name": "db"}},
                  "task": {"params": [{"name": "databases", "value": database}]}}},
    ]
