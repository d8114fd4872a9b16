"""`make demo`: the main job end to end on one machine.

Starts MariaDB, Redis, S3 (SeaweedFS) and a Pushgateway on loopback (fixed demo ports,
data under .stashq/demo), loads the sample database `shop`, applies examples/demo/,
runs a real `stashq worker`, backs `shop` up through Redis to S3, restores the snapshot
into `shop_restored`, proves the two equal and prints a summary. Services are stopped
at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
if Path(sys.prefix).resolve() != VENV.resolve():  # `python scripts/demo.py`: any Python
    if not (VENV / "bin" / "python").exists():
        raise SystemExit("demo: no .venv here yet: run `make demo` (it installs first)")
    os.execv(VENV / "bin" / "python", [str(VENV / "bin" / "python"), *sys.argv])
sys.path.insert(0, str(REPO))

from devstack.compare import differences  # noqa: E402
from devstack.sample import create_sample  # noqa: E402
from devstack.servers.__main__ import BROKER_DB, STATE_DB, DemoServers, write_env  # noqa: E402
from workers.state.redis import RedisStore  # noqa: E402
from workflows.resources import BackupSession, RestoreSession  # noqa: E402

STASHQ = str(Path(sys.executable).with_name("stashq"))
BUCKET = "stashq-demo"
WORKER_READY_S = 60


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([STASHQ, *args], env=env, capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo: stashq {' '.join(args)} failed ({result.returncode}):\n"
                         f"{result.stdout}")
    return result.stdout


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([STASHQ, "worker", "-c", "2"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + WORKER_READY_S
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: the worker did not start; see {log}")
        time.sleep(0.2)
    return proc


def created(output: str) -> str:
    return next(line.split("/", 1)[1].split()[0] for line in output.splitlines()
                if line.endswith(" created"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the services running")
    parser.add_argument("--dir", type=Path, default=REPO / ".stashq" / "demo")
    args = parser.parse_args()
    servers = DemoServers.under(args.dir)
    say(f"starting services under {args.dir}")
    for server in servers.in_start_order():
        server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    env |= {"STASHQ_BROKER_URL": servers.redis.url_for(BROKER_DB),
            "STASHQ_REDIS_URL": servers.redis.url_for(STATE_DB),
            "STASHQ_PUSHGATEWAY_URL": servers.pushgateway.url}
    worker = None
    try:
        worker = start_worker(env, args.dir / "worker.log")
        summary = demo(servers, env)
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=60)
        if not args.keep:
            say("stopping services")
            for server in reversed(servers.in_start_order()):
                server.stop()
    print("\n".join(summary))
    if args.keep:
        print("\n".join(kept_hint(write_env(args.dir.absolute()), args.dir)))


def kept_hint(env_path: Path, root: Path) -> list[str]:
    """What to type next, with the services left running."""
    return ["", "Services left running. To use them (stashq on PATH, pointed at them):",
            f"  source {env_path}",
            "  stashq sessions; stashq snapshots demo-repo   # README, \"Using it\"",
            "To stop them:",
            f"  {VENV / 'bin' / 'python'} -m devstack.servers down --dir {root}"]


def demo(servers: DemoServers, env: dict[str, str]) -> list[str]:
    with servers.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS shop")
        cur.execute("DROP DATABASE IF EXISTS shop_restored")
        create_sample(conn, "shop", customers=2000, orders_per_customer=10)
    say("sample database `shop` loaded (tables, view, trigger, procedure, function, event)")
    client = servers.s3.client()
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        servers.s3.make_bucket(BUCKET)
    print(run(env, "apply", "-f", str(REPO / "examples" / "demo")), end="")
    backup_out = run(env, "backup", "shop-nightly", "--wait")
    backup_name = created(backup_out)
    print(run(env, "snapshots", "demo-repo"), end="")
    restore_out = run(env, "restore", "--repository", "demo-repo", "--target", "shop-db",
                      "--snapshot", backup_name, "--database", "shop_restored", "--wait")
    restore_name = created(restore_out)
    with servers.mariadb.connect() as conn:
        problems = differences(conn, "shop", "shop_restored")
    if problems:
        raise SystemExit("demo: restored database differs:\n" + "\n".join(problems))
    store = RedisStore.from_url(env["STASHQ_REDIS_URL"])
    backup = store.get(BackupSession, backup_name, "default").status
    restore = store.get(RestoreSession, restore_name, "default").status
    snap = backup["snapshot"]
    return ["", "StashQ demo: OK",
            f"  snapshot     {snap['name']}",
            f"  dump size    {snap['rawSize']:,} bytes; stored {snap['totalSize']:,} bytes "
            f"(zstd, {snap['rawSize'] / max(snap['totalSize'], 1):.1f}x)",
            f"  backup       {backup['sessionDuration']} (dump+upload "
            f"{snap['processingTimeSeconds']}s)",
            f"  restore      {restore['sessionDuration']} into shop_restored",
            "  verified     CHECKSUM TABLE equal on every table; views, triggers, routines "
            "and events equal"]


if __name__ == "__main__":
    main()
