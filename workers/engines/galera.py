"""Galera cluster backups: garbd asks a donor for a State Snapshot Transfer (SST) to us.

garbd (the Galera Arbitrator) joins the cluster as a member without data, requests an
SST that names our listener as the receiving address, and leaves. The donor runs its
``wsrep_sst_<method>`` script, which connects to that address twice, one connection
after the other: first a small xbstream holding the Galera state it is sending (the
galera info), then, about ten seconds later, the xbstream of its whole data directory.
The listener accepts the connections in turn; each is a stream of its own.

The hard part is failure. garbd exits 0 as soon as the donor accepted the request, and
also when no donor could be chosen; a donor that fails afterwards says so only in its
own log (``WSREP_SST:`` lines). So the outcome is read from garbd's log (cluster
unreachable, wrong group name, no such donor) and from what arrives: no connection in
time means the donor refused or failed the SST; a data stream that stops before
mariadb-backup's last files means it failed mid-way (see ``workers.xbstream``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from workflows.errors import DumpFailed, InvalidResource, PrecheckFailed
from workflows.resources import AppBinding

log = logging.getLogger(__name__)

#: Galera's default group communication port, when an address names none.
GCOMM_PORT = 4567
#: The SST request suffix (module / lsn / sst_ver) Galera nodes expect from a joiner.
SST_REQUEST_SUFFIX = "/xtrabackup_sst//1"
#: garbd's node name, as the donor's log will show it.
GARBD_NAME = "stashq-backup"
#: The galera info stream is a few hundred bytes; more than this is not one.
INFO_MAX_BYTES = 1 * 2**20
#: Seconds between checks on garbd while waiting for the donor to connect.
POLL_S = 0.5
#: garbd log lines copied to the worker log when it fails.
GARBD_LOG_LINES = 15
#: Seconds to wait for a node's group communication port to accept a connection.
CONNECT_PROBE_S = 5.0
#: Seconds garbd may take beyond its join timeout to report and exit.
GARBD_EXIT_MARGIN_S = 30.0
GRASTATE = "grastate.dat"


@dataclass(frozen=True)
class GaleraCluster:
    """Where the cluster is, as KubeDB writes it in the AppBinding's ``spec.parameters``."""

    address: str      #: gcomm://host[:port][,host[:port]...]
    group: str        #: wsrep_cluster_name
    sst_method: str   #: the donor's SST script: mariabackup, xtrabackup-v2, ...

    def hosts(self) -> list[tuple[str, int]]:
        rest = self.address.split("://", 1)[-1].split("?", 1)[0]
        out = []
        for item in filter(None, (part.strip() for part in rest.split(","))):
            parts = urlsplit(f"//{item}")
            out.append((parts.hostname or item, parts.port or GCOMM_PORT))
        return out

    def describe(self) -> str:
        return f'Galera group "{self.group}" at {self.address}'


def cluster_of(binding: AppBinding, default_sst_method: str) -> GaleraCluster:
    """Read ``address``, ``group`` and ``sstMethod`` from the AppBinding's parameters."""
    params: Mapping[str, Any] = binding.spec.parameters
    for key, meaning in (("address", "cluster address, gcomm://..."), ("group", "cluster name")):
        if not isinstance(params.get(key), str) or not params[key].strip():
            raise InvalidResource(f"is required for a cluster backup (the Galera {meaning})",
                                  kind="AppBinding", name=binding.name,
                                  path=f"spec.parameters.{key}")
    address = str(params["address"]).strip()
    if not address.startswith("gcomm://") or not GaleraCluster(address, "", "").hosts():
        raise InvalidResource(f'"{address}" is not a gcomm://host[:port],... address',
                              kind="AppBinding", name=binding.name, path="spec.parameters.address")
    method = str(params.get("sstMethod") or default_sst_method)
    return GaleraCluster(address=address, group=str(params["group"]).strip(), sst_method=method)


@dataclass(frozen=True)
class SSTOptions:
    donor: str = ""              #: node name to ask; empty lets the cluster choose
    listen_host: str = ""        #: address the donor connects to; empty: ours toward the cluster
    listen_port: int = 0         #: 0: any free port
    allow_any_peer: bool = False  #: accept SST connections from hosts outside the cluster
    join_timeout_s: float = 30.0     #: garbd's wait for a primary component (Galera: 30 s)
    connect_timeout_s: float = 120.0  #: wait for each of the donor's connections
    idle_timeout_s: float = 1800.0    #: a data stream silent this long has stalled


def garbd_binary() -> str:
    path = shutil.which("garbd", path=os.pathsep.join([os.environ.get("PATH", ""),
                                                       "/usr/sbin", "/usr/local/sbin"]))
    if path is None:
        raise PrecheckFailed("garbd (Galera Arbitrator) is not installed on this worker "
                             "(Debian: galera-arbitrator-4)")
    return path


def garbd_failure(text: str, cluster: GaleraCluster, donor: str,
                  join_timeout_s: float) -> str | None:
    """What went wrong, read from garbd's log; None if garbd reports no failure."""
    if "Requested donor is not available" in text:
        return (f'donor "{donor}" is not a synced member of {cluster.describe()}; name '
                "another node (param donor) or leave it empty to let the cluster choose")
    if "No donor candidates temporarily available" in text:
        return (f"no node of {cluster.describe()} can donate a state transfer now (all are "
                "joining or donating); try again later")
    if "State transfer request failed" in text:
        return f"{cluster.describe()} refused the state transfer request: {_last(text, 'FATAL')}"
    if "failed to reach primary view" in text or "Failed to open connection to group" in text:
        refused = _last(text, "Failed to establish connection") or _last(text, "Failed to resolve")
        if refused:
            reason = refused.rsplit(": ", 1)[-1] if "establish" in refused else refused
            return (f"Galera cluster at {cluster.address} is unreachable: garbd could not "
                    f"connect to any node ({reason})")
        return (f"could not join {cluster.describe()} within {join_timeout_s:.0f} s: the nodes "
                "did not accept garbd into that group; the cluster name is likely wrong "
                "(check spec.parameters.group), or the cluster has no primary component")
    return None


def check_reachable(cluster: GaleraCluster, timeout_s: float = CONNECT_PROBE_S) -> None:
    """Fail fast, naming every node, if no node of the cluster accepts a TCP connection
    (garbd would retry for its whole join timeout before saying so)."""
    problems = []
    for host, port in cluster.hosts():
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            return
        except OSError as e:
            problems.append(f"{host}:{port}: {e.strerror or e}")
    raise PrecheckFailed(f"Galera cluster at {cluster.address} is unreachable: no node accepts "
                         f"connections ({'; '.join(problems)})")


def selected_donor(text: str) -> str | None:
    """The node the cluster chose as donor, from garbd's log."""
    match = re.search(r"Selected \S+ \(([^)]*)\)\(\w+\) as donor", text)
    return match[1] if match else None


def _last(text: str, needle: str) -> str:
    lines = [line for line in text.splitlines() if needle in line]
    return re.sub(r"^\S+ \S+\s+(INFO|WARN|ERROR|FATAL):\s*", "", lines[-1]) if lines else ""


class SSTReceiver:
    """Listen, start garbd, then take the donor's two connections in turn.

    Use as a context manager; ``receive_info()`` first, then ``data_chunks()``.
    """

    def __init__(self, cluster: GaleraCluster, options: SSTOptions, work_dir: Path) -> None:
        self.cluster, self.options, self.work_dir = cluster, options, work_dir
        self.log_path = work_dir / "garbd.log"
        self._listener: socket.socket | None = None
        self._garbd: subprocess.Popen[bytes] | None = None
        self._garbd_done_at: float | None = None
        self._rejected: list[str] = []
        self.address = ""

    # --- setup -------------------------------------------------------------------------

    def __enter__(self) -> SSTReceiver:
        host = self.options.listen_host or local_address_toward(self.cluster.hosts()[0])
        try:
            listener = socket.create_server((host, self.options.listen_port), backlog=4)
        except OSError as e:
            raise DumpFailed(f"cannot listen for the SST on {host}:{self.options.listen_port}: "
                             f"{e.strerror or e} (params sstAddress, sstPort)") from e
        self._listener = listener
        self.address = f"{host}:{listener.getsockname()[1]}"
        try:
            self._garbd = self._start_garbd(host)
        except BaseException:
            listener.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._garbd is not None and self._garbd.poll() is None:
            self._garbd.terminate()
            try:
                self._garbd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._garbd.kill()
                self._garbd.wait()

    def _start_garbd(self, host: str) -> subprocess.Popen[bytes]:
        options = (f"gmcast.listen_addr=tcp://{host}:{free_port(host)}; "
                   f"pc.wait_prim_timeout=PT{max(1, round(self.options.join_timeout_s))}S")
        argv = [garbd_binary(), "--name", GARBD_NAME, "--address", self.cluster.address,
                "--group", self.cluster.group, "--options", options,
                "--sst", f"{self.cluster.sst_method}:{self.address}{SST_REQUEST_SUFFIX}"]
        if self.options.donor:
            argv += ["--donor", self.options.donor]
        log.info("asking %s for an SST to %s (%s)", self.cluster.describe(), self.address,
                 f'donor "{self.options.donor}"' if self.options.donor else "any donor")
        with self.log_path.open("wb") as out:
            return subprocess.Popen(argv, cwd=self.work_dir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)

    # --- the two streams -----------------------------------------------------------------

    def receive_info(self) -> bytes:
        """The first connection's bytes: the galera info xbstream."""
        with self._accept("the galera info") as conn:
            data = bytearray()
            while chunk := conn.recv(64 * 2**10):
                data += chunk
                if len(data) > INFO_MAX_BYTES:
                    raise DumpFailed(f"the first SST connection from {self.donor} sent more "
                                     f"than {INFO_MAX_BYTES} bytes: it is not a galera info "
                                     f"stream (SST method {self.cluster.sst_method!r}?)")
        return bytes(data)

    def data_chunks(self, chunk_bytes: int) -> Iterator[bytes]:
        """The second connection's bytes (the data directory), in chunks of ``chunk_bytes``."""
        with self._accept("the data directory") as conn:
            conn.settimeout(self.options.idle_timeout_s)
            while True:
                try:
                    chunk = conn.recv(chunk_bytes)
                except TimeoutError:
                    raise DumpFailed(f"the SST data stream from donor {self.donor} stalled: "
                                     f"no data for {self.options.idle_timeout_s:.0f} s") from None
                if not chunk:
                    return
                yield chunk

    def cut_short(self, why: str) -> DumpFailed:
        return DumpFailed(f"the SST data stream from donor {self.donor} of "
                          f"{self.cluster.describe()} was cut short ({why}): the backup failed "
                          "on the donor; its error log has the WSREP_SST lines")

    @property
    def donor(self) -> str:
        chosen = selected_donor(self.garbd_log()) or self.options.donor
        return f'"{chosen}"' if chosen else "(unknown)"

    def garbd_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @contextlib.contextmanager
    def _accept(self, what: str) -> Iterator[socket.socket]:
        assert self._listener is not None
        allowed = None if self.options.allow_any_peer else peer_addresses(self.cluster)
        started = time.monotonic()
        while time.monotonic() < self._deadline(started):
            readable, _, _ = select.select([self._listener], [], [], POLL_S)
            if readable:
                conn, (peer, _port) = self._listener.accept()
                if allowed is None or peer in allowed:
                    log.info("SST connection for %s from %s", what, peer)
                    with conn:
                        yield conn
                    return
                conn.close()
                self._rejected.append(peer)
                log.warning("rejected an SST connection from %s: not a node of %s", peer,
                            self.cluster.describe())
            self._check_garbd()
        raise self._no_connection(what)

    def _deadline(self, started: float) -> float:
        """While garbd runs, its own join timeout bounds the wait (plus a margin); after
        it left, the donor has ``connect_timeout_s`` to connect."""
        timeout = self.options.connect_timeout_s
        if self._garbd_done_at is None:
            return started + self.options.join_timeout_s + timeout + GARBD_EXIT_MARGIN_S
        return max(started, self._garbd_done_at) + timeout

    def _check_garbd(self) -> None:
        """Raise garbd's failure as soon as it exits with one."""
        if self._garbd is None or self._garbd_done_at is not None:
            return
        code = self._garbd.poll()
        if code is None:
            return
        self._garbd_done_at = time.monotonic()
        text = self.garbd_log()
        failure = garbd_failure(text, self.cluster, self.options.donor,
                                self.options.join_timeout_s)
        if failure is None and code != 0:
            failure = f"garbd exited with code {code}: {_last(text, 'ERROR') or 'no message'}"
        if failure is not None:
            tail = "\n".join(text.splitlines()[-GARBD_LOG_LINES:])
            log.warning("garbd failed (exit code %s); the end of its log:\n%s", code, tail)
            raise DumpFailed(failure)

    def _no_connection(self, what: str) -> DumpFailed:
        rejected = (f"; connections from {', '.join(sorted(set(self._rejected)))} were "
                    "rejected as not from a cluster node (param sstPeers: \"*\" allows any)"
                    if self._rejected else "")
        return DumpFailed(
            f"donor {self.donor} of {self.cluster.describe()} accepted the state transfer "
            f"request but never sent {what} to {self.address} within "
            f"{self.options.connect_timeout_s:.0f} s: the SST (method "
            f"{self.cluster.sst_method!r}) was refused or failed on the donor, or it cannot "
            f"reach this worker; the donor's error log has the WSREP_SST lines{rejected}")


def local_address_toward(peer: tuple[str, int]) -> str:
    """Our IP address on the route to ``peer`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(peer)
            return str(probe.getsockname()[0])
    except OSError as e:
        raise DumpFailed(f"Galera node {peer[0]}:{peer[1]} is unreachable from this worker: "
                         f"{e.strerror or e}") from e


def peer_addresses(cluster: GaleraCluster) -> set[str]:
    """The IP addresses the cluster's hosts resolve to (where a donor connects from)."""
    out: set[str] = set()
    for host, port in cluster.hosts():
        with contextlib.suppress(OSError):
            out |= {str(info[4][0]) for info in socket.getaddrinfo(host, port,
                                                                    proto=socket.IPPROTO_TCP)}
    return out


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def write_grastate(data_dir: Path, uuid: str, seqno: int, *, safe_to_bootstrap: bool) -> None:
    """Galera's saved state, so the node starts at the restored position (not -1)."""
    (data_dir / GRASTATE).write_text(
        f"# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   {seqno}\n"
        f"safe_to_bootstrap: {int(safe_to_bootstrap)}\n", encoding="ascii")
