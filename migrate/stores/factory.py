"""Open the stores a plan names. The one place that maps plan settings to backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrate.stores.base import SourceStore
from migrate.stores.s3 import S3Location, S3Store

if TYPE_CHECKING:
    from migrate.plan import Destination, Plan, S3Source, SupabaseSource


def s3_location(access: "S3Source | Destination") -> S3Location:
    return S3Location(
        endpoint_url=access.endpoint_url,
        region=access.region,
        profile=access.profile,
        access_key_id=access.access_key_id,
        secret_access_key=access.secret_access_key,
        session_token=access.session_token,
    )


def open_source(
    plan: "Plan", *, concurrency: int | None = None, use_catalog: bool | None = None, fetch_user_metadata: bool = True, headers_from_read: bool = False
) -> SourceStore:
    """The store to inventory and read the plan's source from.

    A Supabase source with a `database_url` lists from the PostgreSQL
    catalog (unless `use_catalog=False`) and reads bytes over REST.
    `headers_from_read` (the plan and run stages): an S3 source lists without
    a HEAD per object, since `run` takes the headers from the GET; callers
    that keep the listed headers themselves (backups) leave it off.
    """
    connections = max(8, concurrency or plan.transfer.concurrency)
    source = plan.source
    if source.kind == "s3":
        # With `headers_from_read`, no HEAD per listed object: no filter or rule decides on headers,
        # and `run` takes Content-Type, Cache-Control, Content-Disposition and user metadata from the GET.
        fetch = fetch_user_metadata and not headers_from_read
        return S3Store(s3_location(source), max_connections=connections, fetch_metadata=fetch)  # type: ignore[arg-type]
    from migrate.stores.supabase import SupabaseStore

    supabase: SupabaseSource = source  # type: ignore[assignment]
    attempts = plan.transfer.max_attempts
    rest = SupabaseStore(supabase.url, supabase.key, max_connections=connections, fetch_user_metadata=fetch_user_metadata, max_attempts=attempts)
    want_catalog = bool(supabase.database_url) if use_catalog is None else use_catalog
    if want_catalog and supabase.database_url:
        from migrate.stores.catalog import CatalogStore

        return CatalogStore(supabase.database_url, rest, max_attempts=attempts)
    return rest


def open_destination(plan: "Plan", *, concurrency: int | None = None) -> S3Store:
    """The store the plan writes to: S3 (one connection per worker), or a local folder (`type: local`).

    `LocalStore` offers the same put/multipart primitives as `S3Store`, so the
    run stage treats both alike.
    """
    destination = plan.require_destination()
    if destination.type == "local":
        from migrate.stores.local import LocalStore

        assert destination.path is not None
        return LocalStore(destination.path)  # type: ignore[return-value]
    return S3Store(s3_location(destination), max_connections=max(8, concurrency or plan.transfer.concurrency))
