"""One archive run: fetch what the server wrote to its binlog since the archived
position, up to its current end, and store it as segments (``workflows/binlogs.py``).

The server is read with ``mariadb-binlog --read-from-remote-server --raw``, one binlog
file at a time from the archived position, into a temporary directory (raw mode writes
files, not stdout); credentials go through the in-memory 0600 option file. The active
file is read too, up to its current end: the recovery point never waits for a
rotation (wal-g #1332). Each piece is cut after its last whole transaction, stored,
and its manifest written last, so a worker killed anywhere leaves the archive where
the last manifest says, and the next run goes on from exactly there.

Refused, with a message naming the fix: a server without binlog, a format other than
ROW, a user without REPLICATION SLAVE (reading the binlog) or BINLOG MONITOR (listing
it).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from workers import database
from workers.engines.base import ConnectionInfo, defaults_file
from workers.process import ClientProcess
from workers.repository import Repository
from workflows.binlog_events import MAGIC, Piece, read_piece
from workflows.binlogs import (
    FILE_START,
    BinlogSegment,
    Cut,
    ServerView,
    Start,
    cut_piece,
    plan_start,
)
from workflows.errors import DumpFailed, PrecheckFailed

if TYPE_CHECKING:
    import pymysql

log = logging.getLogger(__name__)

Pause = Callable[[str], None]  #: a named pause point (``workers/pauses.py``)

BINLOG_CLIENTS = ("mariadb-binlog", "mysqlbinlog")
#: Bytes read from a fetched binlog file at a time.
READ_CHUNK_BYTES = 1 * 2**20
#: Privileges the archive needs, and what for.
REQUIRED_PRIVILEGES = {"REPLICATION SLAVE": "to read the binlog (mariadb-binlog "
                                            "--read-from-remote-server)"}
#: zstd level of segments: binlogs are small per run, level 3 costs nothing here.
SEGMENT_ZSTD_LEVEL = 3


@dataclass(frozen=True)
class RunReport:
    """What one run did."""

    segments: list[BinlogSegment]
    view: ServerView
    read_at: float  #: unix time the server's binlog end was read: archived up to then

    @property
    def stored_bytes(self) -> int:
        return sum(s.stream.size_bytes for s in self.segments if s.stream is not None)


def binlog_client() -> str:
    for name in BINLOG_CLIENTS:
        path = shutil.which(name)
        if path:
            return path
    raise PrecheckFailed(f"no binlog client installed (looked for {', '.join(BINLOG_CLIENTS)} "
                         "on PATH)")


def inspect_server(conn: pymysql.Connection, info: ConnectionInfo, *, what: str) -> ServerView:
    """The server's binlog as a value; ``PrecheckFailed`` if it cannot be archived."""
    import pymysql

    with conn.cursor() as cursor:
        cursor.execute("SELECT @@log_bin, @@binlog_format, @@server_id, @@gtid_domain_id, "
                       "@@hostname, @@port, CURRENT_USER()")
        log_bin, fmt, server_id, domain, host, port, user = cursor.fetchone()
        if str(log_bin).upper() not in ("1", "ON"):
            raise PrecheckFailed(f"{what}: the server writes no binary log, so there is nothing "
                                 "to archive: start it with log_bin (and binlog_format=ROW)")
        if str(fmt).upper() != "ROW":
            raise PrecheckFailed(f"{what}: binlog_format is {fmt}, not ROW: a {fmt} binlog "
                                 "replays statements, whose results (NOW(), UUID(), LIMIT "
                                 "without ORDER BY, triggers) may differ from the original "
                                 "ones, so a restored point would not be the real one. Set "
                                 "binlog_format=ROW")
        missing = sorted(set(REQUIRED_PRIVILEGES) - privileges(cursor, str(user)))
        if missing:
            raise PrecheckFailed(f"{what}: user {info.user} lacks the {missing[0]} privilege, "
                                 f"needed {REQUIRED_PRIVILEGES[missing[0]]}: GRANT "
                                 f"{', '.join(missing)} ON *.* TO the user")
        try:
            cursor.execute("SHOW BINARY LOGS")
            files = [(str(row[0]), int(row[1])) for row in cursor.fetchall()]
            cursor.execute("SHOW MASTER STATUS")
            current = cursor.fetchone()
        except pymysql.MySQLError as e:
            raise PrecheckFailed(f"{what}: user {info.user} may not list the binary logs "
                                 f"({e.args[-1]}): GRANT BINLOG MONITOR ON *.* TO the user "
                                 "(REPLICATION CLIENT before MariaDB 10.5)") from None
        names = [name for name, _ in files]
        points = [*((name, FILE_START) for name in names), (str(current[0]), int(current[1]))]
        marks = ", ".join(["BINLOG_GTID_POS(%s, %s)"] * len(points))
        cursor.execute(f"SELECT {marks}", tuple(v for point in points for v in point))
        states = [str(s or "") for s in cursor.fetchone()]
    return ServerView(server=f"{host}:{port}", server_id=int(server_id), domain_id=int(domain),
                      files=files, current=(str(current[0]), int(current[1])),
                      state=states[-1], file_states=dict(zip(names, states, strict=False)))


def privileges(cursor: pymysql.cursors.Cursor, current_user: str) -> set[str]:
    """Global privileges of the connected user (``user@host`` as CURRENT_USER() says)."""
    user, _, host = current_user.rpartition("@")
    cursor.execute("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                   "WHERE GRANTEE = %s", (f"'{user}'@'{host}'",))
    return {str(p).upper() for (p,) in cursor.fetchall()}


def fetch(cnf: Path, file: str, pos: int, directory: Path) -> Path:
    """Binlog ``file`` from ``pos`` to its current end, raw, into ``directory``."""
    client = ClientProcess([binlog_client(), f"--defaults-file={cnf}",
                            "--read-from-remote-server", "--raw", f"--start-position={pos}",
                            f"--result-file={directory}/", file])
    try:
        for _ in client.chunks(READ_CHUNK_BYTES):
            pass  # raw mode writes files; stdout stays empty
    except DumpFailed as e:
        if "REPLICATION SLAVE" in str(e):
            raise PrecheckFailed(f"reading the binlog needs the REPLICATION SLAVE privilege: "
                                 f"{e}") from e
        raise
    finally:
        client.stop()
    return directory / file


def file_chunks(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Bytes ``[start, end)`` of a file, in chunks."""
    with path.open("rb") as f:
        f.seek(start)
        left = (end - start) if end is not None else None
        while left is None or left > 0:
            chunk = f.read(READ_CHUNK_BYTES if left is None else min(READ_CHUNK_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk


def segment_bytes(path: Path, piece: Piece, cut: Cut) -> Iterator[bytes] | None:
    """A segment's data: magic, the file's Format_description event, then the fetched
    events ``[cut.start, cut.end)``: a binlog file of its own. None if it has no event."""
    if cut.end <= cut.start or piece.delta is None:
        return None

    def chunks() -> Iterator[bytes]:
        yield MAGIC + piece.format_event
        yield from file_chunks(path, piece.offset(cut.start), piece.offset(cut.end))
    return chunks()


def new_segment(source: str, last: BinlogSegment | None, view: ServerView, file: str,
                cut: Cut, now: datetime) -> BinlogSegment:
    seq = 1 if last is None else last.seq + 1
    span = seq if last is None or cut.gap is not None else last.span
    groups = cut.groups
    return BinlogSegment(
        seq=seq, span=span, source=source, server=view.server, server_id=view.server_id,
        domain_id=view.domain_id, file=file, start=cut.start, end=cut.end, closed=cut.closed,
        gtid_start=cut.state_before, gtid_end=cut.state_after, transactions=len(groups),
        first_gtid=str(groups[0].gtid) if groups else None,
        last_gtid=str(groups[-1].gtid) if groups else None,
        first_time=_time(groups[0].timestamp) if groups else None,
        last_time=_time(groups[-1].timestamp) if groups else None,
        gap=cut.gap, archived_at=now)


def _time(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def archive_run(repo: Repository, source: str, info: ConnectionInfo, *, what: str,
                pause: Pause = lambda point: None) -> RunReport:
    """Archive what the server wrote since the last segment of ``source``; ``pause`` is
    the fault tests' hook (``workers/pauses.py``)."""
    with database.connect(info, what=what) as conn:
        view = inspect_server(conn, info, what=what)
    read_at = time.time()
    last = repo.last_binlog_segment(source)
    start: Start | None = plan_start(last, view, datetime.now(UTC))
    if start is not None and start.gap is not None:  # (always a Start here)
        log.error("%s: gap in the binlog archive of %s: %s; archiving resumes at %s:%d (%s)",
                  what, source, start.gap.reason, start.file, start.pos, start.state)
    written: list[BinlogSegment] = []
    with defaults_file(info) as cnf, tempfile.TemporaryDirectory(prefix="stashq-binlog-") as tmp:
        while start is not None:
            segment, start = _archive_piece(repo, source, view, last, start, cnf, Path(tmp),
                                            pause)
            if segment is not None:
                written.append(segment)
                last = segment
    return RunReport(written, view, read_at)


def _archive_piece(repo: Repository, source: str, view: ServerView,
                   last: BinlogSegment | None, start: Start, cnf: Path,
                   tmp: Path, pause: Pause) -> tuple[BinlogSegment | None, Start | None]:
    """Fetch and store one piece; the segment, and where to go on (None: done)."""
    path = fetch(cnf, start.file, start.pos, tmp)
    try:
        piece = read_piece(file_chunks(path), start.pos)
        now = datetime.now(UTC)
        cut = cut_piece(piece, start, now)
        if cut is None:
            return None, None
        segment = repo.write_binlog_segment(
            new_segment(source, last, view, start.file, cut, now),
            segment_bytes(path, piece, cut), level=SEGMENT_ZSTD_LEVEL,
            before_manifest=lambda: pause("before_segment_manifest"))
    finally:
        path.unlink(missing_ok=True)
    log.info("archived %s:%d-%d of %s (%d transaction(s), %s) as segment %d", start.file,
             cut.start, cut.end, view.server, len(cut.groups),
             segment.gtid_end or "no GTID", segment.seq)
    if cut.more:
        return segment, Start(start.file, cut.end, cut.state_after)
    following = view.after(start.file) if cut.closed else None
    if following is None:
        return segment, None
    return segment, Start(following, FILE_START, cut.state_after)
