"""Plan files for tests that drive whole stages: a Supabase source (URL, key and
database URL from the environment, as users write them) to an S3 bucket."""

from __future__ import annotations

from pathlib import Path


def write_supabase_plan(
    path: Path,
    *,
    name: str,
    bucket: str,
    dest: str,
    endpoint: str,
    database_url: bool = False,
    key_variable: str = "SUPABASE_SERVICE_ROLE_KEY",
    extra: str = "",
) -> Path:
    """Write `path`: source `bucket` via ${SUPABASE_URL}/${<key_variable>} (and ${SUPABASE_DB_URL}), destination `dest` at `endpoint`.

    `dest` and `endpoint` may be `${VAR}` references too (they are quoted)."""
    catalog = "  database_url: ${SUPABASE_DB_URL}\n" if database_url else ""
    path.write_text(
        f"""version: 1
name: {name}
source:
  type: supabase
  url: ${{SUPABASE_URL}}
  key: ${{{key_variable}}}
  buckets: [{bucket}]
{catalog}destination: {{bucket: "{dest}", endpoint_url: "{endpoint}", region: us-east-1}}
{extra}"""
    )
    return path
