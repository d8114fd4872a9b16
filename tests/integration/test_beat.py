"""The scheduler as a user meets it: one session per slot however many beats run, paused
configurations that do not replay, slots skipped while a backup still runs, missed slots
counted, bad configurations reported without stopping anything, history trimmed, and
retention applied after real backups.

The first tests drive the scheduler in this process against the test Redis with a clock
the test moves; the last ones run real ``stashq beat`` processes (on a shared clock that
runs 30x faster than real time) and a real worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from beat.apply import apply_paths
from beat.scheduler import HISTORY_EVERY_S, Scheduler
from devstack.resources import appbinding, s3_repository, secret
from devstack.stack import STASHQ, Stack, created
from workers.context import SessionRef
from workers.locks import acquire, lock_name
from workers.state.redis import RedisStore
from workflows.packs import writer_dir
from workflows.resources import BackupConfiguration, BackupSession, Repository
from workflows.schedule import session_name

NS = "beat"
#: 2025-01-01T12:00:00Z, a slot of every schedule used here.
T0 = 1735732800.0


@dataclass
class ManualClock:
    """Time moves only when the scheduler sleeps or the test says so."""

    t: float

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.01)


@dataclass
class Worker:
    """Stands in for the queue: records what was queued, and may finish it at once."""

    store: RedisStore
    clock: ManualClock
    finish: bool = True
    queued: list[str] = field(default_factory=list)
    queued_at: list[float] = field(default_factory=list)

    def __call__(self, ref: SessionRef) -> None:
        self.queued.append(ref.name)
        self.queued_at.append(self.clock.t)
        status = {"queuedAt": "now"}
        if self.finish:
            status |= {"phase": "Succeeded", "completionTimestamp": self.clock.t}
        self.store.patch_status(BackupSession, ref.name, ref.namespace, status)


def config_yaml(name: str, schedule: str, *, paused: bool = False, time_zone: str = "UTC",
                history: int = 100, extra: str = "") -> str:
    return f"""apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {{name: {name}}}
spec:
  schedule: "{schedule}"
  timeZone: {time_zone}
  paused: {str(paused).lower()}
  backupHistoryLimit: {history}
  repository: {{name: repo}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: db}}
{extra}"""


BASE = f"""{secret("db-auth", username="root", password="")}---
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {{name: db}}
spec:
  type: kubedb.com/mariadb
  clientConfig: {{url: "tcp(127.0.0.1:3306)/"}}
  secret: {{name: db-auth}}
---
apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {{name: repo}}
spec:
  backend:
    local: {{mountPath: /backups}}
"""


@dataclass
class Beat:
    """One scheduler in this process, with its store, clock and stand-in worker."""

    store: RedisStore
    clock: ManualClock
    worker: Worker
    scheduler: Scheduler
    tmp_path: Path

    def apply(self, *docs: str) -> None:
        path = self.tmp_path / f"apply-{time.monotonic_ns()}.yaml"
        path.write_text("---\n".join(docs))
        list(apply_paths(self.store, [path], NS, dispatch=lambda ref: None))

    def run_until(self, t: float) -> None:
        while self.clock.t < t:
            self.scheduler.run(_iterations=1)

    def sessions(self, config: str) -> dict[str, dict[str, object]]:
        return {s.name: s.status for s in self.store.list(BackupSession, NS)
                if s.spec.invoker.name == config}

    def status(self, config: str) -> dict[str, object]:
        return self.store.get(BackupConfiguration, config, NS).status


def make_beat(store: RedisStore, tmp_path: Path, clock: ManualClock | None = None,
              **options: float) -> Beat:
    clock = clock or ManualClock(T0 - 30)
    worker = Worker(store, clock)
    scheduler = Scheduler(store, worker, clock=clock, namespace=NS, **options)
    return Beat(store, clock, worker, scheduler, tmp_path)


@pytest.fixture
def beat(redis_url: str, tmp_path: Path) -> Beat:
    store = RedisStore.from_url(redis_url)
    made = make_beat(store, tmp_path)
    made.apply(BASE)
    return made


def names(config: str, *slots: float) -> set[str]:
    return {session_name(config, int(s)) for s in slots}


def test_each_slot_becomes_one_session_queued_once(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "*/5 * * * *"))
    beat.run_until(T0 + 16 * 60)
    expected = names("nightly", T0, T0 + 300, T0 + 600, T0 + 900)
    assert set(beat.sessions("nightly")) == expected
    assert sorted(beat.worker.queued) == sorted(expected)
    status = beat.status("nightly")
    assert status["phase"] == "Ready" and status["lastSession"] == f"nightly-{int(T0 + 900)}"
    assert status["lastScheduleTime"] == "2025-01-01T12:15:00Z"
    assert status["nextScheduleTime"] == "2025-01-01T12:20:00Z"
    assert "missedSlots" not in status


def test_a_session_is_created_within_a_second_of_its_slot(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 0.5)  # the loop sleeps until the slot, not a whole tick past it
    assert set(beat.sessions("nightly")) == names("nightly", T0)
    assert beat.worker.queued_at == [T0]


def test_two_schedulers_on_one_store_create_and_queue_each_slot_once(
        beat: Beat, tmp_path: Path) -> None:
    other = make_beat(beat.store, tmp_path, beat.clock)
    beat.apply(config_yaml("nightly", "* * * * *"))
    while beat.clock.t < T0 + 10 * 60:
        beat.scheduler.tick()
        other.scheduler.tick()
        beat.clock.t += 7
    expected = names("nightly", *(T0 + 60 * i for i in range(10)))
    assert set(beat.sessions("nightly")) == expected
    queued = beat.worker.queued + other.worker.queued
    assert sorted(queued) == sorted(expected)  # each exactly once, by whichever created it


def test_paused_creates_nothing_and_resuming_replays_nothing(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "* * * * *", paused=True))
    beat.run_until(T0 + 5 * 60 + 10)
    assert beat.sessions("nightly") == {}
    assert beat.status("nightly")["nextScheduleTime"] == "2025-01-01T12:06:00Z"
    beat.apply(config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 7 * 60 + 10)
    assert set(beat.sessions("nightly")) == names("nightly", T0 + 360, T0 + 420)
    assert "missedSlots" not in beat.status("nightly")


def test_resuming_after_a_restart_replays_nothing_either(beat: Beat, tmp_path: Path) -> None:
    beat.apply(config_yaml("nightly", "* * * * *", paused=True))
    beat.run_until(T0 + 3 * 60 + 10)
    beat.apply(config_yaml("nightly", "* * * * *"))  # while no beat runs
    restarted = make_beat(beat.store, tmp_path, ManualClock(T0 + 3 * 60 + 50))
    restarted.run_until(T0 + 4 * 60 + 10)
    assert set(restarted.sessions("nightly")) == names("nightly", T0 + 240)


def test_a_slot_while_the_previous_session_runs_is_skipped_with_the_reason(
        beat: Beat) -> None:
    beat.worker.finish = False  # backups stay Pending/Running
    beat.apply(config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 10)
    first = f"nightly-{int(T0)}"
    beat.store.patch_status(BackupSession, first, NS, {"phase": "Running"})
    beat.run_until(T0 + 60 + 10)
    skipped = beat.sessions("nightly")[f"nightly-{int(T0 + 60)}"]
    assert skipped["phase"] == "Skipped"
    assert skipped["reason"] == f'the previous session "{first}" is still Running'
    assert beat.worker.queued == [first]
    beat.store.patch_status(BackupSession, first, NS, {"phase": "Succeeded"})
    beat.run_until(T0 + 120 + 10)
    assert beat.sessions("nightly")[f"nightly-{int(T0 + 120)}"]["phase"] == "Pending"


def test_after_a_downtime_the_latest_slot_runs_and_the_others_are_counted(
        beat: Beat, tmp_path: Path) -> None:
    beat.apply(config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 10)
    # Beat is down from T0+10 until T0+10min+20s: 10 slots pass, the last 20 s ago.
    restarted = make_beat(beat.store, tmp_path, ManualClock(T0 + 620))
    restarted.run_until(T0 + 621)
    assert set(restarted.sessions("nightly")) == names("nightly", T0, T0 + 600)
    status = restarted.status("nightly")
    assert status["missedSlots"] == 9
    assert status["lastMissed"] == {"count": 9, "atLeast": False,
                                    "noticedAt": "2025-01-01T12:10:20Z"}


def test_a_slot_found_past_the_starting_deadline_is_recorded_as_skipped(
        beat: Beat, tmp_path: Path) -> None:
    beat.apply(config_yaml("nightly", "0 * * * *"))
    beat.run_until(T0 + 10)
    restarted = make_beat(beat.store, tmp_path, ManualClock(T0 + 3 * 3600 + 400),
                          starting_deadline_s=300)
    restarted.run_until(T0 + 3 * 3600 + 401)
    late = restarted.sessions("nightly")[f"nightly-{int(T0 + 3 * 3600)}"]
    assert late["phase"] == "Skipped"
    assert late["reason"] == ("missed: the slot of 2025-01-01T15:00:00Z was reached 400s "
                              "late, past the starting deadline of 300s (was the scheduler "
                              "stopped?)")
    assert restarted.status("nightly")["missedSlots"] == 3
    assert restarted.worker.queued == []


def test_changes_are_seen_within_one_tick_and_a_new_schedule_starts_now(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "0 3 * * *"))
    beat.run_until(T0 + 10)
    beat.apply(config_yaml("nightly", "*/10 * * * *"), config_yaml("hourly", "0 * * * *"))
    beat.run_until(T0 + 3600 + 10)
    assert set(beat.sessions("nightly")) == names("nightly", *(T0 + 600 * i for i in range(1, 7)))
    assert set(beat.sessions("hourly")) == names("hourly", T0 + 3600)
    assert "missedSlots" not in beat.status("nightly")
    beat.store.delete(BackupConfiguration, "nightly", NS)  # its sessions go with it
    beat.run_until(T0 + 7200 + 10)
    assert len(beat.sessions("nightly")) == 0 and len(beat.sessions("hourly")) == 2


def raw_config(store: RedisStore, name: str, body: object, namespace: str = NS) -> None:
    """Write a configuration the way an older or foreign writer might have: unchecked."""
    client: redis.Redis = store._redis
    client.set(f"stashq:res:BackupConfiguration:{namespace}:{name}",
               body if isinstance(body, str) else json.dumps(body))
    client.sadd("stashq:index:BackupConfiguration", f"{namespace}/{name}")


def test_bad_configurations_are_reported_and_the_others_keep_running(
        beat: Beat, caplog: pytest.LogCaptureFixture) -> None:
    good = json.loads(json.dumps({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "x", "namespace": NS},
        "spec": {"schedule": "* * * * *", "repository": {"name": "repo"},
                 "target": {"ref": {"name": "db"}}}}))
    raw_config(beat.store, "zoned", {**good, "metadata": {"name": "zoned", "namespace": NS},
                                     "spec": {**good["spec"], "timeZone": "Mars/Olympus"}})
    raw_config(beat.store, "garbled", "{not json")
    doubled = json.dumps({**good, "metadata": {"name": "doubled", "namespace": NS}})
    raw_config(beat.store, "doubled", doubled.replace('"schedule": "* * * * *"',
                                                      '"schedule": "0 3 * * *", '
                                                      '"schedule": "* * * * *"'))
    # Accepted by the parser, but February never has a 31st:
    beat.apply(config_yaml("never", "0 0 31 2 *"), config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 130)
    assert set(beat.sessions("nightly")) == names("nightly", T0, T0 + 60, T0 + 120)
    zoned, garbled, never, twice = (raw_status(beat.store, n)
                                    for n in ("zoned", "garbled", "never", "doubled"))
    assert zoned["phase"] == "Invalid"
    assert zoned["reason"] == ('state store: BackupConfiguration "zoned": spec.timeZone: '
                               '"Mars/Olympus" is not a known time zone')
    assert str(garbled["reason"]).startswith('state store: BackupConfiguration "garbled": '
                                             "the stored JSON is unreadable (Expecting")
    assert twice["reason"] == ('state store: BackupConfiguration "doubled": duplicate key '
                               '"schedule"')
    assert set(beat.sessions("doubled")) == set()
    assert never["phase"] == "Invalid"
    assert str(never["reason"]).startswith('state store: BackupConfiguration "never": '
                                           'spec.schedule: "0 0 31 2 *" has no slot after')
    assert "is not scheduled" in caplog.text and "Mars/Olympus" in caplog.text
    beat.apply(config_yaml("zoned", "* * * * *", time_zone="Europe/Berlin"))
    beat.run_until(T0 + 190)
    assert beat.status("zoned")["phase"] == "Ready" and "reason" not in beat.status("zoned")
    assert set(beat.sessions("zoned")) == names("zoned", T0 + 180)


def raw_status(store: RedisStore, name: str, namespace: str = NS) -> dict[str, object]:
    """The status of a configuration the store cannot load (it is invalid)."""
    raw = store._redis.get(f"stashq:status:BackupConfiguration:{namespace}:{name}")
    return json.loads(raw) if raw else {}


def test_finished_sessions_beyond_the_history_limit_are_deleted(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "*/10 * * * *", history=2))
    beat.run_until(T0 + 2400 + HISTORY_EVERY_S + 1)  # the last one finished, then a sweep
    assert set(beat.sessions("nightly")) == names("nightly", T0 + 1800, T0 + 2400)


def test_a_session_never_queued_is_failed_instead_of_blocking_forever(beat: Beat) -> None:
    beat.apply(config_yaml("nightly", "*/10 * * * *"))
    orphan = f"nightly-{int(T0 - 600)}"  # its beat died between create and queue
    beat.store.create(BackupSession.model_validate({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": orphan, "namespace": NS},
        "spec": {"invoker": {"name": "nightly"}}, "status": {"phase": "Pending"}}))
    beat.run_until(T0 + 10)
    sessions = beat.sessions("nightly")
    assert sessions[orphan]["phase"] == "Failed"
    assert "never queued" in str(sessions[orphan]["reason"])
    assert beat.worker.queued == [f"nightly-{int(T0)}"]


def test_a_session_that_cannot_be_queued_fails_with_the_reason(beat: Beat) -> None:
    def broken_broker(ref: SessionRef) -> None:
        raise ConnectionError("broker at redis://nowhere refused the connection")

    beat.scheduler.dispatch = broken_broker
    beat.apply(config_yaml("nightly", "* * * * *"))
    beat.run_until(T0 + 10)
    status = beat.sessions("nightly")[f"nightly-{int(T0)}"]
    assert status["phase"] == "Failed"
    assert status["reason"] == ("could not be queued: ConnectionError: broker at "
                                "redis://nowhere refused the connection")


# --- real processes --------------------------------------------------------------------

#: The beats' shared clock runs this many times faster than real time: a minute in 2 s.
RATE = 30.0
CREATED = re.compile(r"created BackupSession (\S+)/(\S+): (\w+)")


@dataclass
class BeatProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def created(self) -> list[str]:
        return [m.group(2) for m in CREATED.finditer(self.log())]

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


@pytest.fixture
def beats(stack: Stack, namespace: str, tmp_path: Path) -> Iterator[list[BeatProcess]]:
    """Two ``stashq beat`` processes on the test's namespace, sharing one fast clock."""
    anchor = time.time()
    origin = (anchor // 60 + 1) * 60 - 1  # one (fast) second before a minute starts
    started = []
    for i in range(2):
        log_path = tmp_path / f"beat-{i}.log"
        proc = subprocess.Popen(
            [STASHQ, "beat", "-n", namespace, f"--clock-origin={origin}",
             f"--clock-anchor={anchor}", f"--clock-rate={RATE}"],
            env=stack.env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        started.append(BeatProcess(proc, log_path))
    yield started
    for b in started:
        b.stop()


def setup_yaml(stack: Stack, bucket: str, database: str, *configs: str) -> str:
    return "---\n".join([
        secret("db-auth", username="root", password=""),
        secret("s3-auth", AWS_ACCESS_KEY_ID=stack.s3.access_key,
               AWS_SECRET_ACCESS_KEY=stack.s3.secret_key),
        appbinding("db", stack.mariadb, "db-auth"),
        s3_repository("repo", stack.s3, bucket, "s3-auth"), *configs])


def params(database: str) -> str:
    return f'  task:\n    params:\n      - {{name: databases, value: "{database}"}}\n'


def wait_final(store: RedisStore, namespace: str, timeout_s: float = 90) -> None:
    """Let queued backups finish, so the next test finds an idle worker."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        phases = {s.status.get("phase") for s in store.list(BackupSession, namespace)}
        if phases <= {"Succeeded", "Failed", "Skipped"}:
            return
        time.sleep(0.5)


def test_two_beat_processes_create_each_slot_exactly_once(
        stack: Stack, beats: list[BeatProcess], namespace: str, database: str, bucket: str,
        tmp_path: Path) -> None:
    store = RedisStore.from_url(stack.redis_url)
    path = tmp_path / "setup.yaml"
    path.write_text(setup_yaml(stack, bucket, database, config_yaml(
        "minutely", "* * * * *", extra=params(database))))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    raw_config(store, "broken", {
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"schedule": "* * * * *", "timeZone": "Nowhere/Atlantis",
                 "repository": {"name": "repo"}, "target": {"ref": {"name": "db"}}}},
               namespace)

    time.sleep(7 * 60 / RATE)  # seven minutes of the beats' clock
    assert all(b.proc.poll() is None for b in beats), "a beat died"
    for b in beats:
        assert b.stop() == 0

    created = beats[0].created() + beats[1].created()
    sessions = {s.name: s.status for s in store.list(BackupSession, namespace)}
    assert len(created) == len(set(created)) >= 5           # nobody created a slot twice
    assert set(created) == set(sessions)                     # and nothing else exists
    slots = sorted(int(n.rsplit("-", 1)[1]) for n in created)
    assert slots == list(range(slots[0], slots[-1] + 60, 60))  # no slot left out
    broken = raw_status(store, "broken", namespace)
    store.delete(BackupConfiguration, "broken", namespace)  # db 0 is shared with other tests
    assert broken["phase"] == "Invalid" and "Nowhere/Atlantis" in str(broken["reason"])
    assert all("Nowhere/Atlantis" in b.log() for b in beats)
    wait_final(store, namespace)
    worker_log = stack.worker.log()
    for name, status in sessions.items():
        started = worker_log.count(f"[{name}] workers.steps.session: step stashq.precheck started")
        assert started <= 1 and (started == 1 or status["phase"] != "Pending"), name


def test_a_paused_configuration_resumes_without_replaying_in_a_running_beat(
        stack: Stack, beats: list[BeatProcess], namespace: str, database: str, bucket: str,
        tmp_path: Path) -> None:
    store = RedisStore.from_url(stack.redis_url)
    paused, resumed = tmp_path / "paused.yaml", tmp_path / "resumed.yaml"
    paused.write_text(setup_yaml(stack, bucket, database, config_yaml(
        "minutely", "* * * * *", paused=True, extra=params(database))))
    resumed.write_text(config_yaml("minutely", "* * * * *", extra=params(database)))
    stack.cli("apply", "-f", str(paused), namespace=namespace, check=True)
    time.sleep(3 * 60 / RATE)
    assert store.list(BackupSession, namespace) == []
    clock_at_resume = time.time()
    stack.cli("apply", "-f", str(resumed), namespace=namespace, check=True)
    time.sleep(3 * 60 / RATE)
    for b in beats:
        assert b.stop() == 0
    sessions = store.list(BackupSession, namespace)
    assert 2 <= len(sessions) <= 4
    # Every session's slot came after the resume, on the beats' clock.
    origin, anchor = _clock(beats[0])
    resumed_at = origin + (clock_at_resume - anchor) * RATE
    assert all(int(s.name.rsplit("-", 1)[1]) > resumed_at for s in sessions)
    assert all(s.status.get("scheduleTime") for s in sessions)
    wait_final(store, namespace)


def _clock(b: BeatProcess) -> tuple[float, float]:
    args = b.proc.args
    assert isinstance(args, list)
    value = {a.split("=")[0]: float(a.split("=")[1]) for a in args if a.startswith("--clock")}
    return value["--clock-origin"], value["--clock-anchor"]


def test_retention_keeps_what_the_policy_says_after_real_backups(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    store = RedisStore.from_url(stack.redis_url)
    keep_two = "  retentionPolicy: {name: keep-2, keepLast: 2, prune: true}\n"
    dry_run = "  retentionPolicy: {name: keep-1, keepLast: 1, dryRun: true}\n"
    path = tmp_path / "setup.yaml"
    path.write_text(setup_yaml(
        stack, bucket, database,
        config_yaml("nightly", "0 3 * * *", extra=params(database) + keep_two),
        config_yaml("weekly", "0 4 * * 0", extra=params(database))))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)

    weekly = created(stack.cli("backup", "weekly", "--wait", namespace=namespace,
                               check=True).stdout)
    nightly = [created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                                 check=True).stdout) for _ in range(4)]

    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True).stdout
    assert {weekly, *nightly[2:]} == {line.split()[0] for line in listing.splitlines()[1:]}
    keys = [o["Key"] for o in stack.s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    # Manifests, and the packs of what only the forgotten snapshots added (their dumps'
    # last chunk, with its time, and their chunk lists): format 3 deduplicates the rest.
    gone = (nightly[0], nightly[1], writer_dir(nightly[0]), writer_dir(nightly[1]))
    assert not [k for k in keys if any(g in k for g in gone)]
    assert [k for k in keys if writer_dir(weekly) in k]  # the shared chunks stay
    check = stack.cli("check", "repo", "--read-data", namespace=namespace, check=True).stdout
    assert ": ok" in check and "orphan: packs/" not in check
    last = store.get(BackupSession, nightly[-1], namespace).status
    assert last["phase"] == "Succeeded"
    assert last["conditions"]["RetentionPolicyApplied"] == "True"
    pruned = last["retention"].pop("prunedObjects")
    assert last["retention"] == {"policy": "keep-2", "dryRun": False, "prune": True, "kept": 2,
                                 "forgotten": [nightly[1]], "forgottenCount": 1}
    assert pruned >= 1
    assert store.get(Repository, "repo", namespace).status["snapshotCount"] == 3
    assert store.get(Repository, "repo", namespace).status["snapshotsRemovedOnLastCleanup"] == 1

    path.write_text(config_yaml("nightly", "0 3 * * *", extra=params(database) + dry_run))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    dry = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                            check=True).stdout)
    report = store.get(BackupSession, dry, namespace).status["retention"]
    assert report["dryRun"] is True and report["forgottenCount"] == 2
    assert set(report["forgotten"]) == set(nightly[2:])
    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True).stdout
    assert len(listing.splitlines()) == 1 + 4  # nothing was deleted


def test_retention_waits_for_running_backups_then_defers_without_failing(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    store = RedisStore.from_url(stack.redis_url)
    keep_one = "  retentionPolicy: {name: keep-1, keepLast: 1, prune: true}\n"
    wait_1s = '      - {name: lockWaitSeconds, value: "1"}\n'
    path = tmp_path / "setup.yaml"
    path.write_text(setup_yaml(stack, bucket, database, config_yaml(
        "nightly", "0 3 * * *", extra=params(database) + wait_1s + keep_one)))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    first = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                              check=True).stdout)
    # Another configuration's long backup holds the repository (shared) meanwhile.
    lease = acquire(store, lock_name(store.get(Repository, "repo", namespace)),
                    "BackupSession/other/long-1", exclusive=False, purpose="backup", wait_s=0)
    try:
        second = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                                   check=True).stdout)
    finally:
        store.release_lease(lease.lock, lease.token)
    status = store.get(BackupSession, second, namespace).status
    assert status["phase"] == "Succeeded"  # the backup itself is fine
    assert status["conditions"]["RetentionPolicyApplied"] == "False"
    assert "BackupSession/other/long-1 (backup, shared" in status["retention"]["deferred"]
    listing = stack.cli("snapshots", "repo", namespace=namespace, check=True).stdout
    assert {first, second} <= {line.split()[0] for line in listing.splitlines()[1:]}
