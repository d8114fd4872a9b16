"""A MariaDB Galera cluster on loopback (three nodes by default), for cluster backup tests.

Each node has its own directory, option file and four ports (SQL, group communication,
IST, SST). Options live in a file rather than on the command line because a donor's
SST script (`wsrep_sst_mariabackup`) reads the server's `--defaults-file`.

The one hard thing is starting fast. A node that joins with an empty data directory
needs a full SST, and the mariabackup SST script sleeps ten seconds before it streams.
So the first node is installed, bootstrapped once and shut down cleanly (its InnoDB
checkpoint and `grastate.dat` then agree on `uuid:seqno`), its data directory is copied
to the other nodes, and the cluster starts from there: the joiners stand at the same
position and join without a state transfer. A restored cluster starts the same way,
from the data directories a restore wrote (`GaleraCluster(..., data_dirs=...)`).
"""

import getpass
import shutil
from collections.abc import Sequence
from pathlib import Path

import pymysql
import pymysql.connections

from .ports import LOOPBACK, PortPicker
from .process import BinaryMissing, ServerProcess, ServerStartError, find_binary

#: Programs a cluster backup test needs besides the servers themselves.
PROGRAMS = ("mariadbd", "mariadb-install-db", "mariadb-backup", "mbstream", "socat", "garbd")
#: Where Debian's galera-4 puts the wsrep provider.
PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/galera-4/libgalera_smm.so",
             "/usr/lib64/galera-4/libgalera_smm.so")
#: A joiner that needs a full SST waits ten seconds in the donor's script, then copies.
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 2
GRASTATE = "grastate.dat"
#: Each node's ports: SQL, group communication, incremental and snapshot state transfer.
PORTS = ("sql", "gcomm", "ist", "sst")


def wsrep_provider() -> str:
    for path in PROVIDERS:
        if Path(path).exists():
            return path
    raise BinaryMissing("the Galera wsrep provider (libgalera_smm.so) is not installed "
                        "(run scripts/install.sh)")


class GaleraNode:
    """One `mariadbd` of the cluster, in `node_dir`, with its data in `node_dir/data`."""

    user = "root"
    password = ""

    def __init__(self, node_dir: Path, index: int, ports: dict[str, int]) -> None:
        self.node_dir = node_dir.absolute()
        self.index = index
        self.name = f"n{index}"
        self.host = LOOPBACK
        self.port = ports["sql"]
        self.gcomm_port = ports["gcomm"]
        self.ist_port = ports["ist"]
        self.sst_port = ports["sst"]
        self.data = self.node_dir / "data"
        self.config = self.node_dir / "node.cnf"
        self._process = ServerProcess(f"galera-{self.name}", self.node_dir,
                                      stop_timeout_s=STOP_TIMEOUT_S)

    def write_config(self, group: str, address: str, provider: str, *,
                     binlog: bool = False) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""[mysqld]
user={getpass.getuser()}
datadir={self.data}
socket={self.node_dir / "mariadbd.sock"}
pid-file={self.node_dir / "mariadbd.pid"}
log-error={self._process.log_path}
port={self.port}
bind-address={self.host}
skip-name-resolve
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
wsrep_on=ON
# Tests write through one node and expect AUTO_INCREMENT values 1, 2, 3, ...
wsrep_auto_increment_control=OFF
wsrep_provider={provider}
wsrep_cluster_name={group}
wsrep_cluster_address={address}
wsrep_node_name={self.name}
wsrep_node_address={self.host}:{self.gcomm_port}
wsrep_provider_options="gmcast.listen_addr=tcp://{self.host}:{self.gcomm_port};\
ist.recv_addr={self.host}:{self.ist_port};gcache.size=64M"
wsrep_sst_method=mariabackup
wsrep_sst_receive_address={self.host}:{self.sst_port}
wsrep_sst_auth={self.user}:{self.password}
{self._binlog_options() if binlog else ""}[sst]
streamfmt=mbstream
""")

    def _binlog_options(self) -> str:
        """Each node writes its own binlog, replicated writes included, with the cluster's
        GTIDs (one domain for the cluster's writes, its own for anything local)."""
        return f"""log_bin=mysql-bin
log_slave_updates=ON
server_id={100 + self.index}
wsrep_gtid_mode=ON
wsrep_gtid_domain_id=9
gtid_domain_id={10 + self.index}
"""

    def install(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        argv = [find_binary("mariadb-install-db"), f"--defaults-file={self.config}",
                f"--user={getpass.getuser()}", f"--datadir={self.data}",
                "--auth-root-authentication-method=normal", "--skip-test-db"]
        self._process.run_to_log(argv, timeout_s=INSTALL_TIMEOUT_S)

    def start(self, *, bootstrap: bool) -> None:
        """Start the node; a bootstrap node forms a new primary component by itself."""
        argv = [find_binary("mariadbd"), f"--defaults-file={self.config}"]
        self._process.ensure_running(lambda: argv + (["--wsrep-new-cluster"] if bootstrap else []),
                                     self.is_ready, ports_used=[self.port, self.gcomm_port],
                                     ready_timeout_s=READY_TIMEOUT_S)

    def stop(self) -> None:
        self._process.stop()

    def running_pid(self) -> int | None:
        return self._process.running_pid()

    def is_ready(self) -> bool:
        """Accepts a login and is Synced with its cluster."""
        try:
            with self.connect(connect_timeout_s=CONNECT_TIMEOUT_S) as conn:
                return self.status(conn, "wsrep_local_state_comment") == "Synced"
        except pymysql.MySQLError:
            return False

    def connect(self, database: str | None = None, *,
                connect_timeout_s: int = 10) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, charset="utf8mb4",
                               autocommit=True, connect_timeout=connect_timeout_s)

    @staticmethod
    def status(conn: pymysql.connections.Connection, name: str) -> str:
        with conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
            row = cursor.fetchone()
        return str(row[1]) if row else ""

    def log_tail(self) -> str:
        return self._process.log_tail()


class GaleraCluster:
    """`size` nodes of group `group`; new (installed and seeded) unless `data_dirs` exist."""

    name = "galera"

    def __init__(self, base_dir: Path, *, size: int = 3, group: str = "stashqtest",
                 node_dirs: Sequence[Path] = (), binlog: bool = False) -> None:
        self.binlog = binlog  #: every node writes a binlog (point-in-time recovery tests)
        self.data_dir = base_dir.absolute()
        self.group = group
        self.restored = bool(node_dirs)
        dirs = [Path(d) for d in node_dirs] or [self.data_dir / f"n{i}" for i in range(size)]
        with PortPicker() as picker:
            self.nodes = [GaleraNode(d, i, {k: picker.pick() for k in PORTS})
                          for i, d in enumerate(dirs)]
        self.address = "gcomm://" + ",".join(f"{LOOPBACK}:{n.gcomm_port}" for n in self.nodes)

    def start(self) -> None:
        for program in PROGRAMS:
            find_binary(program)
        provider = wsrep_provider()
        for node in self.nodes:
            node.write_config(self.group, self.address, provider, binlog=self.binlog)
        if not self.restored:
            self._seed()
        first, *others = self.nodes
        first.start(bootstrap=True)
        for node in others:  # joining one by one: each may need the donor alone
            node.start(bootstrap=False)
        size = GaleraNode.status(first.connect(), "wsrep_cluster_size")
        if size != str(len(self.nodes)):
            raise ServerStartError(f"galera: cluster size is {size}, expected {len(self.nodes)}")

    def _seed(self) -> None:
        """Install node 0, bootstrap it once, stop it cleanly, copy its data to the others."""
        first, *others = self.nodes
        first.install()
        first.start(bootstrap=True)
        first.stop()
        for node in others:
            shutil.rmtree(node.data, ignore_errors=True)
            shutil.copytree(first.data, node.data, symlinks=True)
            grastate = node.data / GRASTATE
            grastate.write_text(grastate.read_text().replace("safe_to_bootstrap: 1",
                                                             "safe_to_bootstrap: 0"))
            (node.data / "gvwstate.dat").unlink(missing_ok=True)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    def is_ready(self) -> bool:
        return all(node.is_ready() for node in self.nodes)

    def running_pid(self) -> int | None:
        return self.nodes[0].running_pid()
