"""A faithful Supabase Storage server, bundled for tests, rehearsals and benchmarks.

It speaks the REST API of github.com/supabase/storage under `/storage/v1`,
so `supabase.create_client(server.url, server.service_key)` works unchanged,
keeps metadata in the real `storage.buckets` / `storage.objects` schema in
PostgreSQL and object bytes on local disk, and can inject faults on demand
(`POST /storage/v1/_faults`, see faults.py).

    server = launch(database_url=url, data_dir=path, jwt_secret=secret)
    try:
        ...  # server.url, server.secret_key (sb_secret_), server.service_key (legacy JWT), ...
    finally:
        server.stop()
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from migrate.stack.process import LOOPBACK, ServerProcess, free_port
from migrate.stack.supabase_server.auth import make_access_token, make_jwt
from migrate.stack.supabase_server.catalog import ensure_schema
from migrate.stack.supabase_server.keys import DEFAULT_S3_REGION, ProjectKeys, project_keys

JWT_SECRET_ENV = "MIGRATE_SUPABASE_JWT_SECRET"
DATABASE_URL_ENV = "MIGRATE_SUPABASE_DATABASE_URL"
FAULTS_ENV = "MIGRATE_SUPABASE_FAULTS"
READY_TIMEOUT = 30.0

__all__ = ["ProjectKeys", "SupabaseServer", "ensure_schema", "launch", "make_jwt", "project_keys"]


@dataclass
class SupabaseServer:
    """A running server: where it is, the keys to use it, and how to stop it."""

    url: str  # e.g. "http://127.0.0.1:54321" (clients add /storage/v1)
    service_key: str  # HS256 JWT, role service_role, signed with jwt_secret
    anon_key: str  # HS256 JWT, role anon
    jwt_secret: str
    database_url: str
    process: ServerProcess
    s3_region: str = DEFAULT_S3_REGION

    @property
    def jwks_url(self) -> str:
        """Where the project's JWKS (its asymmetric signing key's public half) is published."""
        return f"{self.url}/auth/v1/.well-known/jwks.json"

    def access_token(self, role: str, *, expires_in: int = 3600) -> str:
        """An ES256 access token signed with the project's asymmetric signing key (what Auth issues after a rotation)."""
        return make_access_token(self.jwt_secret, role, expires_in=expires_in)

    @property
    def keys(self) -> ProjectKeys:
        """The project's non-JWT keys (derived from the JWT secret, see keys.py)."""
        return project_keys(self.jwt_secret)

    @property
    def secret_key(self) -> str:
        """`sb_secret_...`: the service role, sent in the `apikey` header only."""
        return self.keys.secret_key

    @property
    def publishable_key(self) -> str:
        """`sb_publishable_...`: the anon role, sent in the `apikey` header."""
        return self.keys.publishable_key

    @property
    def s3_endpoint(self) -> str:
        """The S3 protocol endpoint (path-style): `{url}/storage/v1/s3`."""
        return f"{self.url}/storage/v1/s3"

    @property
    def s3_access_key_id(self) -> str:
        """The project's S3 access key id (SigV4 credential)."""
        return self.keys.s3_access_key_id

    @property
    def s3_secret_access_key(self) -> str:
        """The secret of the project's S3 access key."""
        return self.keys.s3_secret_access_key

    @property
    def storage_url(self) -> str:
        """The REST API root clients talk to (`{url}/storage/v1`)."""
        return f"{self.url}/storage/v1"

    def stop(self) -> None:
        """Stop the server process we started (by its PID)."""
        self.process.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/status", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch(
    *,
    database_url: str,
    data_dir: Path,
    jwt_secret: str,
    port: int | None = None,
    log_path: Path | None = None,
    faults: str | None = None,
    s3_region: str = DEFAULT_S3_REGION,
    access_log: bool = False,
) -> SupabaseServer:
    """Start `python -m migrate.stack.supabase_server` on 127.0.0.1 and wait until it answers.

    `faults` is a JSON rule list (or `@file`) active from the first request.
    The JWT secret and database URL travel in the environment, not in argv.
    `access_log`: one line per request in the log file (costs time under load).
    Raises migrate.stack.process.StackError naming the log file if it fails.
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir / "supabase-storage.log"
    env = {JWT_SECRET_ENV: jwt_secret, DATABASE_URL_ENV: database_url}
    if faults:
        env[FAULTS_ENV] = faults
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "migrate.stack.supabase_server", "--data-dir", str(data_dir), "--port", str(port),
            "--s3-region", s3_region] + (["--access-log"] if access_log else [])
    process = ServerProcess.start(
        "supabase-storage", argv, log_path=log_path, ready=lambda: _answers(url), env=env, timeout=READY_TIMEOUT
    )
    return SupabaseServer(
        url=url,
        service_key=make_jwt(jwt_secret, "service_role"),
        anon_key=make_jwt(jwt_secret, "anon"),
        jwt_secret=jwt_secret,
        database_url=database_url,
        process=process,
        s3_region=s3_region,
    )
