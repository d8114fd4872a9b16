"""`stashq apply -f` of each hostile manifest (issue 19), run as a user runs it: it exits
2 with the reason, stores nothing, and stays small in memory and time. Before the one
strict reader, the issue's alias bomb in ``spec.hooks`` grew to 4 GiB in 40 to 90 s and
aborted, after the Secret, Repository and AppBinding before it had been stored.

Each apply runs in a fresh process, measured by a small launcher (peak resident memory
from ``getrusage(RUSAGE_CHILDREN)``, wall time), against the test's own Redis db: the
documents in front of the hostile one are valid, so a reader that let the hostile one
through would store them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from devstack.resources import secret
from devstack.stack import STASHQ
from tests.support.hostile import CONFIG_YAML, HOSTILE

#: Peak resident memory of a refused apply, in MiB: the CLI itself peaks near 50 MiB;
#: the alias bomb of the issue reached 4 GiB.
MAX_RSS_MIB = 150
#: Wall time of a refused apply, in seconds: the slowest refusal (50,000 nodes composed)
#: takes about 3 s on a busy two-core machine; the alias bomb took 40 s or more to abort.
MAX_WALL_S = 10.0
#: Address space given to each apply, in bytes (the CLI maps about 55 MB): a reader that
#: lets a bomb through fails here, not the machine running the tests.
ADDRESS_SPACE_BYTES = 2**30
#: Seconds after which a runaway apply is killed (and the test fails).
KILL_AFTER_S = 60.0

SUPPORT = secret("auth", username="root", password="pw") + """---
apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {name: repo}
spec: {backend: {local: {mountPath: /tmp/stashq-hostile}}}
---
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: db}
spec: {type: mariadb, secret: {name: auth}, clientConfig: {url: "tcp(127.0.0.1:1)/"}}
---
"""


#: Runs the command given, under the address-space cap, and prints its exit code,
#: stderr, peak RSS and wall time. A launcher of its own because Linux counts, in a
#: child's ``ru_maxrss``, the resident memory of the process that forked it (kept across
#: ``exec``): measured from pytest (200 MiB into the suite), every apply would weigh 200.
LAUNCHER = """
import json, resource, subprocess, sys, time
cap, kill_after_s, args = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
start = time.monotonic()
try:
    done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          timeout=kill_after_s)
    code, stderr = done.returncode, done.stderr
except subprocess.TimeoutExpired as e:
    code, stderr = -9, e.stderr or b""
wall_s = time.monotonic() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps([code, stderr.decode(errors="replace"), peak_kib / 1024, wall_s]))
"""


@dataclass(frozen=True)
class Measured:
    exit_code: int
    stderr: str
    peak_rss_mib: float  #: of the command, plus the launcher's ~10 MiB it started from
    wall_s: float


def run_measured(args: list[str], env: dict[str, str]) -> Measured:
    """Run ``args`` in a fresh process; its exit code, stderr, peak RSS and wall time."""
    launched = subprocess.run(
        [sys.executable, "-I", "-c", LAUNCHER, str(ADDRESS_SPACE_BYTES), str(KILL_AFTER_S),
         *args], env=env, capture_output=True, text=True, timeout=KILL_AFTER_S + 30,
        check=True)
    return Measured(*json.loads(launched.stdout))


@pytest.fixture
def apply_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "STASHQ_REDIS_URL": redis_url, "STASHQ_BROKER_URL": redis_url,
            "STASHQ_STORE": "redis", "STASHQ_NAMESPACE": "hostile"}


def stored_keys(redis_url: str) -> list[bytes]:
    with redis.Redis.from_url(redis_url) as client:
        return sorted(client.keys("*"))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_apply_is_refused_small_and_stores_nothing(
        name: str, apply_env: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    text, reason = HOSTILE[name]
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(SUPPORT + text)
    run = run_measured([STASHQ, "apply", "-f", str(manifest)], apply_env)
    assert (run.exit_code, reason in run.stderr) == (2, True), run.stderr[-2000:]
    assert run.stderr.startswith(f"error: {manifest}"), run.stderr[:300]
    assert run.peak_rss_mib < MAX_RSS_MIB, run
    assert run.wall_s < MAX_WALL_S, run
    assert stored_keys(redis_url) == []


def test_the_same_file_without_its_hostile_shape_is_stored(
        apply_env: dict[str, str], redis_url: str, tmp_path: Path) -> None:
    """The control: the measured run, file and store work, so the refusals above are
    the reader's."""
    manifest = tmp_path / "valid.yaml"
    manifest.write_text(SUPPORT + CONFIG_YAML)
    run = run_measured([STASHQ, "apply", "-f", str(manifest)], apply_env)
    assert run.exit_code == 0, run.stderr
    assert 10 < run.peak_rss_mib < MAX_RSS_MIB and run.wall_s < MAX_WALL_S, run
    assert b"stashq:res:BackupConfiguration:hostile:nightly" in stored_keys(redis_url)
