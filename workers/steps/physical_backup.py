"""physical backup: a data directory as xbstream → zstd → (encryption →) sha256 → repository.

Two sources, one path. ``galera-sst``: garbd asks a cluster node for a State Snapshot
Transfer to this worker (``workers.engines.galera``); the donor's small galera info
stream and then its data directory arrive on two connections and are stored as two
streams. ``mariabackup``: mariadb-backup runs beside a standalone server and streams
its data directory. Either way the bytes go through the same compress/hash/upload
path as logical dumps, never to a local file, and the xbstream is followed as it
passes so that a stream cut short (a donor failing mid-way looks like a clean end
of file) fails the backup instead of becoming a snapshot.

Idempotent per session like the logical dump: the snapshot id is the session name,
and the manifest (``kind: physical``) is written last.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from workers.context import StepContext
from workers.engines import galera
from workers.engines.base import defaults_file
from workers.engines.physical import DATA_STREAM, ToolProcess, backup_args, physical_tools
from workers.locks import backup_lock
from workers.steps.dump_upload import report_progress, snapshot_once, snapshot_stats
from workers.steps.physical_precheck import GALERA_METHOD
from workers.steps.session import DATA_QUEUE, session_step, set_status
from workers.xbstream import (
    BINLOG_INFO,
    CHECKPOINTS,
    DONOR_GALERA_INFO,
    GALERA_INFO,
    StreamFormatError,
    XbstreamScanner,
    backup_lsn,
    galera_state,
    scanned,
)
from workflows.errors import DumpFailed
from workflows.params import PhysicalBackupParams
from workflows.snapshots import Position, Snapshot, Stream

log = logging.getLogger(__name__)

#: The donor's Galera state at the start of the SST (xtrabackup_galera_info, ...).
INFO_STREAM = "galera-info.xbstream.zst"


def store_stream(ctx: StepContext, name: str, raw: Iterable[bytes], level: int,
                 check: Callable[[], None] | None = None) -> Stream:
    """Compress, encrypt, hash and upload ``raw`` under the snapshot; ``check()`` runs at
    its end, before the upload completes, and may raise to abort it."""
    return ctx.repo.write_stream(ctx.ref.name, name, _xbstream(raw), level=level,
                                 threads=ctx.settings.zstd_threads,
                                 report=report_progress(ctx, time.monotonic()),
                                 check_end=None if check is None else lambda _stats: check())


def _xbstream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except StreamFormatError as e:
        raise DumpFailed(f"the backup stream is not a valid xbstream: {e}") from e


def sst_options(params: PhysicalBackupParams) -> galera.SSTOptions:
    defaults = galera.SSTOptions()
    return galera.SSTOptions(
        donor=params.donor, listen_host=params.sst_address, listen_port=params.sst_port,
        allow_any_peer=params.sst_peers == "*",
        join_timeout_s=params.join_timeout_seconds or defaults.join_timeout_s,
        connect_timeout_s=params.connect_timeout_seconds or defaults.connect_timeout_s)


def galera_streams(ctx: StepContext, params: PhysicalBackupParams,
                   level: int) -> tuple[list[Stream], Position]:
    """Ask the cluster for an SST and store its two streams."""
    tools = physical_tools(ctx.appbinding.engine)
    cluster = galera.cluster_of(ctx.appbinding, tools.sst_method)
    with (tempfile.TemporaryDirectory(prefix="stashq-garbd-") as work,
          galera.SSTReceiver(cluster, sst_options(params), Path(work)) as sst):
        info, info_scan = sst.receive_info(), XbstreamScanner()
        info_scan.feed(info)
        start = galera_state(info_scan.text(DONOR_GALERA_INFO) or info_scan.text(GALERA_INFO) or "")
        if start is None:
            raise sst.cut_short("its first stream holds no galera info")
        streams = [store_stream(ctx, INFO_STREAM, [info], level)]
        scan = XbstreamScanner()

        def check() -> None:
            if why := scan.complete((CHECKPOINTS, GALERA_INFO)):
                raise sst.cut_short(why)

        chunks = scanned(sst.data_chunks(ctx.settings.dump_chunk_bytes), scan)
        streams.append(store_stream(ctx, DATA_STREAM, chunks, level, check))
        log.info("SST from donor %s: %s", sst.donor, scan.text(GALERA_INFO))
    end = galera_state(scan.text(GALERA_INFO) or "")
    return streams, Position(cluster_uuid=start[0], seqno=start[1],
                             end_seqno=end[1] if end else None,
                             lsn=backup_lsn(scan.text(CHECKPOINTS) or ""))


def mariabackup_streams(ctx: StepContext, params: PhysicalBackupParams,
                        level: int) -> tuple[list[Stream], Position]:
    """Run mariadb-backup beside the server and store its stream."""
    tool = physical_tools(ctx.appbinding.engine).backup()
    scan = XbstreamScanner()

    def check() -> None:
        if why := scan.complete((CHECKPOINTS,)):
            raise DumpFailed(f"the mariadb-backup stream was cut short ({why})")

    with (defaults_file(ctx.connection) as cnf,
          tempfile.TemporaryDirectory(prefix="stashq-mariabackup-") as work):
        client = ToolProcess(backup_args(tool, cnf, Path(work) / "target",
                                         params.args))
        log.info("streaming the data directory with %s (pid %d)", client.name, client.pid)
        try:
            chunks = scanned(client.chunks(ctx.settings.dump_chunk_bytes), scan)
            streams = [store_stream(ctx, DATA_STREAM, chunks, level, check)]
        finally:
            client.stop()
    binlog = (scan.text(BINLOG_INFO) or "").split()
    return streams, Position(lsn=backup_lsn(scan.text(CHECKPOINTS) or ""),
                             gtid=binlog[-1] if len(binlog) >= 3 else None)


def take_physical_snapshot(ctx: StepContext, params: PhysicalBackupParams) -> Snapshot:
    method = params.method
    snapshot_id = ctx.ref.name
    ctx.repo.discard_unfinished(snapshot_id)
    started_at = datetime.now(UTC)
    level = params.zstd_level or ctx.settings.zstd_level
    source = galera_streams if method == GALERA_METHOD else mariabackup_streams
    streams, position = source(ctx, params, level)
    snapshot = Snapshot(
        id=snapshot_id, session=ctx.ref.name, repository=ctx.repository.name, kind="physical",
        engine=ctx.appbinding.engine.value,
        server_version=ctx.session.status.get("server", {}).get("version", "unknown"),
        target=ctx.appbinding.name, configuration=ctx.invoker, streams=tuple(streams),
        started_at=started_at,
        finished_at=datetime.now(UTC), method=method, position=position)
    ctx.repo.commit(snapshot)
    return snapshot


@session_step("stashq.physical_backup", queue=DATA_QUEUE)
def physical_backup(ctx: StepContext, params: PhysicalBackupParams) -> None:
    """Take the physical snapshot unless this session already has one; record its stats."""

    def take() -> Snapshot:
        with backup_lock(ctx.store, ctx.repository, str(ctx.ref)):  # retention waits for it
            return take_physical_snapshot(ctx, params)

    snapshot = snapshot_once(ctx, take)
    position = snapshot.position.model_dump(by_alias=True, exclude_none=True) \
        if snapshot.position else None
    set_status(ctx, {"snapshot": snapshot_stats(snapshot)
                     | {"kind": snapshot.kind, "method": snapshot.method, "position": position}})
