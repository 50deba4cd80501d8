"""A migrated world for the cutover tests: a public and a private Supabase bucket, copied to SeaweedFS.

`cutover_world` seeds both buckets on the bundled Supabase server, writes a
plan whose rule renames the public bucket's keys (`users/{id}/{file}` ->
`avatars/{id}/{file}`), runs `plan` and `run` through the library, and makes
the destination bucket world-readable (a bucket policy; SeaweedFS honours
it), as a public bucket on AWS or behind a CDN would be.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from migrate.stores.supabase import encode_key

PUBLIC_OBJECTS = {
    "users/u1/avatar.png": b"\x89PNG public avatar " * 50,
    "users/u2/a b (1).txt": b"spaces and parentheses",
}
PRIVATE_OBJECTS = {
    "reports/q1.pdf": b"%PDF private quarterly report " * 100,
    "reports/2024/summary.csv": b"a,b\n1,2\n",
}


@dataclass
class CutoverWorld:
    server: Any
    seaweed: Any
    public_bucket: str
    private_bucket: str
    dest: str
    tmp: Path
    plan_path: Path
    jwt_secret: str
    secret_key: str
    s3: Any
    http: httpx.Client
    extra_plan: str = ""
    data: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    def dest_key(self, bucket: str, key: str) -> str:
        """Where the plan puts an object: the rule renames public users/..., the rest goes below <bucket>/."""
        if bucket == self.public_bucket and key.startswith("users/"):
            return "avatars/" + key[len("users/") :]
        return f"{bucket}/{key}"

    def write_plan(self, extra: str = "") -> None:
        self.extra_plan = extra or self.extra_plan
        self.plan_path.write_text(
            f"""version: 1
name: cutover-{self.dest}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{SUPABASE_SERVICE_ROLE_KEY}}
  buckets: [{self.public_bucket}, {self.private_bucket}]
destination:
  bucket: {self.dest}
  endpoint_url: ${{MIGRATE_DEST_ENDPOINT_URL}}
  region: us-east-1
rules:
  - name: avatars
    bucket: {self.public_bucket}
    match: "users/{{id}}/{{file}}"
    to: "avatars/{{id}}/{{file}}"
transfer: {{concurrency: 2, max_attempts: 3}}
cutover:
  public_buckets: [{self.public_bucket}]
  presign_expires: 10m
  serve: {{jwt_secret_env: CUTOVER_JWT_SECRET, secret_key_env: CUTOVER_SECRET_KEY}}
{self.extra_plan}"""
        )

    def upload(self, bucket: str, key: str, body: bytes) -> None:
        response = self.http.post(
            f"{self.server.url}/storage/v1/object/{bucket}/{encode_key(key)}", content=body, headers={"x-upsert": "true", "Content-Type": "application/octet-stream"}
        )
        assert response.status_code == 200, response.text
        self.data[(bucket, key)] = body

    def remove(self, bucket: str, key: str) -> None:
        response = self.http.request("DELETE", f"{self.server.url}/storage/v1/object/{bucket}", json={"prefixes": [key]})
        assert response.status_code == 200, response.text
        self.data.pop((bucket, key))

    def plan(self) -> Any:
        from migrate.plan import load_plan

        return load_plan(self.plan_path)

    def migrate(self, *, replan: bool = False) -> None:
        from migrate.pipeline import run_migration

        outcome = run_migration(self.plan(), state_dir=self.state_dir, reports_dir=self.tmp / "reports", replan=replan)
        assert outcome.result.ok, outcome.result.failures

    def migrate_replan(self) -> None:
        """`migrate run --replan`: pick up what changed at the source."""
        self.migrate(replan=True)


@pytest.fixture
def cutover_world(
    supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], make_s3_bucket: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> CutoverWorld:
    """Both buckets seeded and migrated; the plan file at `world.plan_path`; env vars set."""
    jwt_secret, secret_key = supabase_server.jwt_secret, f"sb_secret_{secrets.token_urlsafe(24)}"
    for name, value in {
        "SUPABASE_URL": supabase_server.url,
        "SUPABASE_SERVICE_ROLE_KEY": supabase_server.service_key,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "MIGRATE_DEST_ENDPOINT_URL": seaweed.endpoint_url,
        "CUTOVER_JWT_SECRET": jwt_secret,
        "CUTOVER_SECRET_KEY": secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    dest = make_s3_bucket()
    s3 = seaweed.client()
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{dest}/*"}]}
    s3.put_bucket_policy(Bucket=dest, Policy=json.dumps(policy))
    http = httpx.Client(headers={"apikey": supabase_server.service_key, "Authorization": f"Bearer {supabase_server.service_key}"}, timeout=60)
    world = CutoverWorld(
        server=supabase_server,
        seaweed=seaweed,
        public_bucket=make_supabase_bucket(public=True),
        private_bucket=make_supabase_bucket(),
        dest=dest,
        tmp=tmp_path,
        plan_path=tmp_path / f"cutover-{uuid.uuid4().hex[:6]}.yaml",
        jwt_secret=jwt_secret,
        secret_key=secret_key,
        s3=s3,
        http=http,
    )
    for key, body in PUBLIC_OBJECTS.items():
        world.upload(world.public_bucket, key, body)
    for key, body in PRIVATE_OBJECTS.items():
        world.upload(world.private_bucket, key, body)
    world.write_plan()
    world.migrate()
    return world
