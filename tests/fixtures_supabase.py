"""Supabase Storage fixtures backed by the bundled server, started once per test session.

`supabase_server` is the server (127.0.0.1, a random port, a fresh PostgreSQL
database from `make_database`, a tmp data dir); `supabase_http` an httpx
client for its REST API with the service key; `supabase_bucket` a fresh
private bucket per test and `make_supabase_bucket` a factory for tests that
need options or more than one; `supabase_faults` clears injected faults after
the test. Buckets a test created are emptied and deleted after it.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from migrate.stack.supabase_server import SupabaseServer, launch


@pytest.fixture(scope="session")
def supabase_server(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SupabaseServer]:
    """The bundled Supabase Storage server for the whole session; stopped (by PID) at the end."""
    data_dir: Path = tmp_path_factory.mktemp("supabase")
    server = launch(
        database_url=make_database("supabase"),
        data_dir=data_dir,
        jwt_secret=secrets.token_urlsafe(32),
    )
    try:
        yield server
    finally:
        server.stop()


def service_headers(server: SupabaseServer) -> dict[str, str]:
    """What supabase-py sends with the service key: `apikey` and a Bearer token."""
    return {"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}


@pytest.fixture
def supabase_http(supabase_server: SupabaseServer) -> Iterator[httpx.Client]:
    """An httpx client for `{url}/storage/v1` with the service key."""
    with httpx.Client(base_url=supabase_server.storage_url, headers=service_headers(supabase_server), timeout=30) as client:
        yield client


@pytest.fixture
def make_supabase_bucket(supabase_server: SupabaseServer) -> Iterator[Callable[..., str]]:
    """Factory: `make_supabase_bucket(public=False, **options)` creates `b-<uuid8>`; all removed after the test.

    Options are the create-bucket body fields (`file_size_limit`, `allowed_mime_types`).
    """
    created: list[str] = []
    client = httpx.Client(base_url=supabase_server.storage_url, headers=service_headers(supabase_server), timeout=30)

    def create(*, public: bool = False, **options: Any) -> str:
        name = f"b-{uuid.uuid4().hex[:8]}"
        response = client.post("/bucket", json={"id": name, "name": name, "public": public, **options})
        response.raise_for_status()
        created.append(name)
        return name

    try:
        yield create
    finally:
        for name in created:
            client.post(f"/bucket/{name}/empty", json={})
            client.request("DELETE", f"/bucket/{name}", json={})
        client.close()


@pytest.fixture
def supabase_bucket(make_supabase_bucket: Callable[..., str]) -> str:
    """A fresh private bucket for this test."""
    return make_supabase_bucket()


@pytest.fixture
def supabase_faults(supabase_server: SupabaseServer) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """`supabase_faults(rule, ...)` adds fault rules (faults.py format); all are cleared after the test."""
    client = httpx.Client(base_url=supabase_server.storage_url, headers=service_headers(supabase_server), timeout=30)

    def add(*rules: dict[str, Any]) -> list[dict[str, Any]]:
        response = client.post("/_faults", json={"rules": list(rules)})
        response.raise_for_status()
        return list(response.json()["rules"])

    try:
        yield add
    finally:
        client.delete("/_faults")
        client.close()
