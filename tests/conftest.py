"""Shared fixtures. Real servers only: PostgreSQL on 127.0.0.1:5432 (already
running on the machine), SeaweedFS and the bundled Supabase Storage server
(started by the fixture modules below, once per test session)."""

from __future__ import annotations

import os
import uuid
from typing import Callable, Iterator

import psycopg
import pytest

# Fixture modules, one per server. Each adds itself here.
pytest_plugins: list[str] = [
    "tests.fixtures_s3",
    "tests.fixtures_supabase",
    "tests.fixtures_cutover",
]

#: The PostgreSQL server tests use. Trust auth, user postgres (see README).
PG_ADMIN_URL = os.environ.get("MIGRATE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def make_database() -> Iterator[Callable[[str], str]]:
    """Factory: create a fresh, uniquely named database; all are dropped at the end.

    Tests only ever drop databases this factory created.
    """
    created: list[str] = []

    def create(purpose: str = "t") -> str:
        name = f"migrate_test_{purpose}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _database_url(name)

    yield create
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
