"""The local stack's default settings: what `migrate stack --help` shows, without importing the stack itself."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "migrate_stack"
DEFAULT_STATE_DIR = Path(".migrate/stack")
DEFAULT_SUPABASE_PORT = 54321
DEFAULT_S3_PORT = 8333
