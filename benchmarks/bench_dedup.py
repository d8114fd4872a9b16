"""`make bench`, part 2 (issue 13): seven daily backups of one database under four change
patterns, into StashQ format 2 (one object per stream), StashQ format 3 (deduplicating)
and restic, on the same data, the same S3 server, in the same run.

Patterns, applied before each backup after the first: `unchanged`; `append` (1 % of
each table's rows added at its end); `update` (1 % of rows, at random places, get a new
note); `rewrite` (one table of eight emptied and filled anew, another each day).

Then, for the `append` and `update` patterns, a study of how dump options (extended
inserts or one row per INSERT) and chunk sizes (a quarter, one and four times format
3's) change the share of a day's dump that lands in new chunks.

Each day it prints the stored bytes of each repository (what the bucket holds under
its prefix) and the wall time of `mariadb-dump > /dev/null` (raw), of the restic
pipeline and of each StashQ backup's session, with StashQ format 3's ratios to both.
All three repositories are encrypted (restic always is): StashQ's with the same
password. A report, not a test: it exits 0 unless something broke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.bench_backup import RESTIC_FILENAME, ZSTD_LEVEL, Restic
from benchmarks.common import (
    FILL_SQL,
    MIB,
    TABLES,
    _interrupt,
    bucket_bytes,
    buffer_pool_mib,
    client_options,
    drop,
    empty_bucket,
    load_database,
    meters,
    rows_for,
    run_shell,
    start_servers,
    stashq_backup,
    stashq_env,
)
from devstack.resources import appbinding, backup_configuration, s3_repository, secret
from devstack.servers import MariaDBServer, S3Server
from devstack.stack import Stack, Worker
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS
from workers.repository.chunks import ChunkCodec
from workers.repository.config import create_config
from workers.storage.s3 import S3Storage
from workers.streaming import StreamStats
from workflows.packs import Chunker

DEFAULT_SIZE_MIB = 256
DAYS = 7
#: Share of rows appended or updated per day (the issue's 1 %).
CHANGE_FRACTION = 0.01
PATTERNS = ("unchanged", "append", "update", "rewrite")
PASSWORD = "bench-dedup-password"  # noqa: S105 - a throwaway repository's
#: StashQ pipelines → (BackupConfiguration, Repository prefix, format of its config.json).
STASHQ = {"format 2": ("f2", "f2", 2), "format 3": ("f3", "f3", 3)}
RESULTS_PATH = Path(__file__).with_name("results") / "dedup.json"
#: Issue 13's targets.
MAX_STORED_TO_RESTIC = 1.1   # format 3's bytes after the seventh backup / restic's
MIN_RESTIC_TO_STASHQ = 2.0   # restic pipeline / format 3 session, every backup


#: Chunkers compared by the study (min, avg, max bytes): the repository's, and a quarter
#: and four times its size.
STUDY_CHUNKERS = {"256 KiB": (64 * 2**10, 256 * 2**10, 1 * 2**20),
                  "1 MiB (format 3)": (256 * 2**10, 1 * 2**20, 4 * 2**20),
                  "4 MiB": (1 * 2**20, 4 * 2**20, 16 * 2**20)}
#: Dump options compared: mariadb-dump's default (multi-row INSERTs of ~1 MB) and one row
#: per INSERT.
STUDY_DUMPS = {"extended inserts": (), "--skip-extended-insert": ("--skip-extended-insert",)}


@dataclass
class Day:
    day: int
    stored: dict[str, int] = field(default_factory=dict)  #: pipeline → repository bytes
    seconds: dict[str, float] = field(default_factory=dict)  #: wall, or StashQ session


def change(mariadb: MariaDBServer, database: str, pattern: str, day: int, rows: int) -> None:
    """Apply one day's change of ``pattern`` to every table (or to one, ``rewrite``)."""
    n = max(1, int(rows * CHANGE_FRACTION))
    with mariadb.connect(database) as conn, conn.cursor() as cursor:
        if pattern == "append":
            for t in range(TABLES):
                cursor.execute(f"SELECT MAX(id) FROM t{t}")
                (top,) = cursor.fetchone()
                cursor.execute(FILL_SQL.format(table=f"t{t}", rows=n).replace(
                    "SELECT seq,", f"SELECT seq + {top},"))
        elif pattern == "update":
            for t in range(TABLES):
                cursor.execute(f"UPDATE t{t} SET note = CONCAT('updated on day {day}: ', "
                               f"HEX(RANDOM_BYTES(20))) WHERE RAND() < {CHANGE_FRACTION}")
        elif pattern == "rewrite":
            table = f"t{day % TABLES}"
            cursor.execute(f"TRUNCATE TABLE {table}")
            cursor.execute(FILL_SQL.format(table=table, rows=rows))
        conn.commit()


def setup_pattern(stack: Stack, root: Path, database: str, namespace: str) -> str:
    """A bucket with StashQ repositories f2 (format 2, made so before its first backup:
    an existing repository keeps its format) and f3 (new: format 3); the bucket."""
    bucket = f"dedup-{uuid.uuid4().hex[:12]}"
    stack.s3.make_bucket(bucket)
    s3 = stack.s3
    docs = [secret("db-auth", username="root", password=""),
            secret("s3-auth", AWS_ACCESS_KEY_ID=s3.access_key,
                   AWS_SECRET_ACCESS_KEY=s3.secret_key, RESTIC_PASSWORD=PASSWORD),
            appbinding("db", stack.mariadb, "db-auth")]
    for config, prefix, version in STASHQ.values():
        docs += [s3_repository(f"repo-{prefix}", s3, bucket, "s3-auth", prefix=prefix),
                 backup_configuration(config, f"repo-{prefix}", "db", database)]
        if version < 3:
            create_config(_storage(s3, bucket, prefix), PASSWORD, version)
    path = root / f"{namespace}.yaml"
    path.write_text("---\n".join(docs))
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)
    return bucket


def _storage(s3: S3Server, bucket: str, prefix: str) -> S3Storage:
    return S3Storage(endpoint=s3.endpoint, bucket=bucket, prefix=prefix, region=s3.region,
                     access_key=s3.access_key, secret_key=s3.secret_key)


def bench_pattern(stack: Stack, pattern: str, size_mib: int, days: int, cnf: Path,
                  root: Path) -> list[Day]:
    database, namespace = f"dedup_{pattern}", f"dedup-{pattern}"
    rows = rows_for(size_mib)
    print(f"\n== {pattern}: loading {TABLES} x {rows:,} rows ...", flush=True)
    load_database(stack.mariadb, database, rows)
    bucket = setup_pattern(stack, root, database, namespace)
    restic = Restic.create(stack.s3, root)
    restic.fresh()  # one restic repository for the seven days: it deduplicates across them
    dump = shlex.join(["mariadb-dump", f"--defaults-file={cnf}", *CONSISTENT_DUMP_OPTIONS,
                       database])
    meter, worker_meter = meters(stack)
    results = []
    for day in range(1, days + 1):
        if day > 1:
            change(stack.mariadb, database, pattern, day, rows)
        result = Day(day)
        result.seconds["raw"] = meter.time("raw", partial(run_shell, f"{dump} > /dev/null")).wall_s
        restic_backup = (f"{dump} | restic backup --quiet --stdin --stdin-filename "
                         f"{RESTIC_FILENAME}")
        result.seconds["restic"] = meter.time(
            "restic", partial(run_shell, restic_backup, env=restic.env)).wall_s
        result.stored["restic"] = restic.stored_bytes()
        for pipeline, (config, prefix, _) in STASHQ.items():
            run, _ = stashq_backup(stack, namespace, config, pipeline, worker_meter)
            result.seconds[pipeline] = run.extra["session"]
            result.stored[pipeline] = bucket_bytes(stack.s3, bucket, prefix + "/")
        results.append(result)
        print("   " + day_line(result), flush=True)
    drop(stack.mariadb, database)
    empty_bucket(stack.s3, bucket)
    empty_bucket(stack.s3, restic.bucket)
    return results


def new_fraction(before: Path, after: Path, chunker: Chunker) -> float:
    """Share of ``after``'s bytes in chunks that ``before`` does not have."""
    codec = ChunkCodec(chunker)

    def chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as f:
            yield from codec.cut(iter(lambda: f.read(MIB), b""), StreamStats())

    known = {codec.chunk_id(c) for c in chunks(before)}
    new = sum(len(c) for c in chunks(after) if codec.chunk_id(c) not in known)
    return new / max(1, after.stat().st_size)


def chunking_study(stack: Stack, pattern: str, size_mib: int, cnf: Path,
                   root: Path) -> dict[str, dict[str, float]]:
    """How dump options and chunk sizes change what one day's ``pattern`` adds: the
    share of the second dump in chunks the first lacks (in-process, no repository)."""
    database = f"study_{pattern}"
    load_database(stack.mariadb, database, rows_for(size_mib))
    dumps = {}
    for day in (1, 2):
        if day == 2:
            change(stack.mariadb, database, pattern, day, rows_for(size_mib))
        for name, options in STUDY_DUMPS.items():
            path = root / f"study-{day}-{len(options)}.sql"
            run_shell(shlex.join(["mariadb-dump", f"--defaults-file={cnf}",
                                  *CONSISTENT_DUMP_OPTIONS, *options, database])
                      + f" > {shlex.quote(str(path))}")
            dumps[day, name] = path
    drop(stack.mariadb, database)
    study = {name: {label: new_fraction(dumps[1, name], dumps[2, name],
                                        Chunker(min_bytes=lo, avg_bytes=avg, max_bytes=hi))
                    for label, (lo, avg, hi) in STUDY_CHUNKERS.items()}
             for name in STUDY_DUMPS}
    for path in dumps.values():
        path.unlink()
    return study


def day_line(d: Day) -> str:
    s = d.stored
    f3 = d.seconds["format 3"]
    return (f"day {d.day}: stored MiB f2 {s['format 2'] / MIB:8.1f}  f3 {s['format 3'] / MIB:8.1f}"
            f"  restic {s['restic'] / MIB:8.1f}   s: raw {d.seconds['raw']:6.2f} restic "
            f"{d.seconds['restic']:6.2f} f2 {d.seconds['format 2']:6.2f} f3 {f3:6.2f}  "
            f"restic/f3 {d.seconds['restic'] / f3:5.2f}x  f3/raw {f3 / d.seconds['raw']:5.2f}x")


Check = tuple[str, float, float, bool]


def targets(results: dict[str, list[Day]]) -> list[Check]:
    checks: list[Check] = []
    for pattern, days in results.items():
        last = days[-1].stored
        ratio = last["format 3"] / last["restic"]
        checks.append((f"{pattern}: format 3 / restic stored after day {days[-1].day} (≤)",
                       ratio, MAX_STORED_TO_RESTIC, ratio <= MAX_STORED_TO_RESTIC))
        slowest = min(d.seconds["restic"] / d.seconds["format 3"] for d in days)
        checks.append((f"{pattern}: restic / format 3 backup, slowest day (≥)", slowest,
                       MIN_RESTIC_TO_STASHQ, slowest >= MIN_RESTIC_TO_STASHQ))
        repeat = [d.seconds["format 3"] for d in days]
        if pattern == "unchanged" and len(repeat) > 1:
            worst = max(repeat[1:]) / repeat[0]
            checks.append(("unchanged: repeat / first format 3 backup, slowest (≤)", worst,
                           1.0, worst <= 1.0))
    return checks


def report(results: dict[str, list[Day]], argv: list[str], size_mib: int,
           study: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\nseven daily backups, {size_mib} MiB of dump, stored bytes after each "
          "(StashQ format 2, format 3, restic) and seconds (raw dump, restic, StashQ sessions)")
    for pattern, days in results.items():
        print(f"{pattern}:")
        for d in days:
            print("  " + day_line(d))
    if study:
        print("\nshare of the day-2 dump in new chunks, by dump option and chunk size:")
        for pattern, options in study.items():
            for name, by_size in options.items():
                cells = "  ".join(f"{label} {share:6.1%}" for label, share in by_size.items())
                print(f"  {pattern:<10} {name:<24} {cells}")
    checks = targets(results)
    print("\ntargets (issue 13):")
    for what, value, limit, met in checks:
        print(f"  {what:<62} {value:7.2f}  limit {limit:g}  {'PASS' if met else 'MISS'}")
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "argv": argv, "size_mib": size_mib, "zstd_level": ZSTD_LEVEL,
        "patterns": {p: [asdict(d) for d in days] for p, days in results.items()},
        "study": study,
        "targets": [dict(zip(("what", "value", "limit", "met"), c, strict=True))
                    for c in checks]}, indent=2))
    print(f"\nwrote {RESULTS_PATH}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dedup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_MIB,
                        help="dump size, MiB (default: %(default)s)")
    parser.add_argument("--days", type=int, default=DAYS, help="backups (%(default)s)")
    parser.add_argument("--patterns", default=",".join(PATTERNS),
                        help="comma-separated, of: " + ", ".join(PATTERNS))
    parser.add_argument("--study", default="append,update",
                        help="patterns whose chunking study runs (dump options x chunk "
                             "sizes; empty: none; default %(default)s)")
    args = parser.parse_args(argv)
    args.patterns = [p for p in args.patterns.split(",") if p]
    args.study = [p for p in args.study.split(",") if p]
    if unknown := set(args.patterns + args.study) - set(PATTERNS):
        parser.error(f"unknown pattern(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.ExitStack() as exits:
        root = Path(tempfile.mkdtemp(prefix="stashq-dedup-"))
        exits.callback(shutil.rmtree, root, ignore_errors=True)
        mariadb, redis, s3, pushgateway = start_servers(
            root, buffer_pool_mib(2 * args.size_mib), exits)
        env = stashq_env(redis, pushgateway, root, ZSTD_LEVEL)
        cnf = exits.enter_context(client_options(mariadb))
        worker = Worker(env, root / "worker.log")
        stack = Stack(env, worker, mariadb, s3, pushgateway, redis.url)
        exits.callback(worker.stop)
        worker.start()
        results = {p: bench_pattern(stack, p, args.size_mib, args.days, cnf, root)
                   for p in args.patterns}
        study = {p: chunking_study(stack, p, args.size_mib, cnf, root) for p in args.study}
        report(results, argv, args.size_mib, study)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
