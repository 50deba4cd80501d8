"""The YAML plan: what to migrate, where to, and the rules in between.

A plan file (see `plans/*.yaml`) is read once by `load_plan` into a frozen
`Plan`. Its keys, their types, defaults and meaning are declared once, in
`migrate.plan.model`, and as JSON Schema in `plans/plan.schema.json` (from
`migrate schema`). Everything wrong with a plan is a `PlanError` naming the
file, the line and the key (`plans/x.yaml:14: rules[1].match: ...`) and
saying what is expected; never a traceback, never a secret.
"""

from migrate.plan.loader import load_plan, parse_plan
from migrate.plan.cutover import (
    LIFECYCLE_TRANSITION_CLASSES, MAX_PRESIGN_SECONDS, BucketSettings, CutoverSettings, DefaultEncryption, LifecycleRule, LifecycleTransition,
    ServeSettings, parse_duration,
)
from migrate.plan.endpoints import BACKUP_TARGET_TYPES, STORAGE_CLASSES, BackupTarget, BucketSelection, Destination, S3Source, SupabaseSource
from migrate.plan.model import (
    BackupSettings, DEFAULT_GET_PER_1000, DEFAULT_PUT_PER_1000, DEFAULT_STORAGE_PRICES, MAX_PART_SIZE, MIN_PART_SIZE, PLAN_VERSION, CostTable, Filters, Plan,
    RewriteRule, Rule, RuleMetadata, Tier, TransferSettings, VerifySettings, plan_json_schema,
)
from migrate.plan.values import GiB, KiB, MiB, TiB, format_size, parse_size

__all__ = [
    "LIFECYCLE_TRANSITION_CLASSES", "MAX_PRESIGN_SECONDS", "BucketSettings", "CutoverSettings", "DefaultEncryption", "LifecycleRule",
    "LifecycleTransition", "ServeSettings", "parse_duration",
    "BACKUP_TARGET_TYPES", "BackupSettings", "BackupTarget", "BucketSelection", "CostTable", "Destination", "Filters", "Plan", "RewriteRule", "Rule", "RuleMetadata", "S3Source",
    "STORAGE_CLASSES", "SupabaseSource", "Tier", "TransferSettings", "VerifySettings", "format_size", "load_plan",
    "parse_plan", "parse_size", "plan_json_schema",
]
