"""migrate: move Supabase Storage to S3 without losing a byte, and prove it.

The library API, one call per stage (the `migrate` command is a thin shell over these)::

    from migrate import load_plan, plan_migration, run_migration, verify_plan

    plan = load_plan("plans/plugin-registry.yaml")
    planned = plan_migration(plan)            # dry run: manifest + summary
    outcome = run_migration(plan)             # resumable transfer; outcome.result.ok
    report = verify_plan(plan, mode="deep")   # audit; report.exit_status, report.path
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use: `migrate --help` should not pay for boto3 and polars.
_API = {
    "load_plan": "migrate.plan",
    "Plan": "migrate.plan",
    "plan_migration": "migrate.inventory",
    "run_migration": "migrate.pipeline",
    "transfer_objects": "migrate.transfer",
    "TransferOptions": "migrate.transfer",
    "verify_plan": "migrate.pipeline",
    "verify_records": "migrate.verify",
    "VerifyOptions": "migrate.verify",
    "ObjectRecord": "migrate.records",
    "MANIFEST_SCHEMA": "migrate.records",
    "REPORT_SCHEMA": "migrate.report",
    "MigrateError": "migrate.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'migrate' has no attribute {name!r}")
