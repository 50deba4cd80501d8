"""The destination calls only the cutover stages make: presigned GETs, bucket configuration, deletions.

Kept beside `s3.py` rather than in it: they use the same boto3 client
(`S3Store.client`, so endpoint, region, addressing style and credentials are
resolved in one place) and the same error translation (`translate_error`),
and add nothing to the transfer's data path. Every call raises `migrate.errors`
types; the stages retry them through `migrate.retry`.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Iterable

import boto3
import botocore.exceptions
from botocore.config import Config

from migrate.stores.s3 import S3Store, translate_error

# DeleteObjects takes at most 1000 keys per request (AWS S3 API reference).
DELETE_BATCH = 1000

# Error codes S3 answers for "this bucket has no such configuration".
_NO_LIFECYCLE = {"NoSuchLifecycleConfiguration"}
_NO_ENCRYPTION = {"ServerSideEncryptionConfigurationNotFoundError"}


def _call(store: S3Store, what: str, method: str, **kwargs: Any) -> Any:
    try:
        return getattr(store.client, method)(**kwargs)
    except Exception as err:  # noqa: BLE001 - translated, never swallowed
        raise translate_error(err, what=what) from err


def _missing(err: Exception, codes: set[str]) -> bool:
    return isinstance(err, botocore.exceptions.ClientError) and err.response.get("Error", {}).get("Code") in codes


_presigners: "weakref.WeakKeyDictionary[S3Store, Any]" = weakref.WeakKeyDictionary()
_presigners_lock = threading.Lock()


def _presigning_client(store: S3Store) -> Any:
    """The store's client with SigV4 presigning.

    botocore still presigns S3 URLs with SigV2 unless the client asks for
    `s3v4`, and SigV2 is refused by AWS in newer regions and by SeaweedFS with
    our settings (SignatureDoesNotMatch). Built from the store's own client
    configuration, endpoint and region, and its `S3Location` credentials, so
    nothing resolves differently from the transfer.
    """
    with _presigners_lock:
        client = _presigners.get(store)
        if client is None:
            location = store.location
            session = boto3.session.Session(
                profile_name=location.profile,
                aws_access_key_id=location.access_key_id,
                aws_secret_access_key=location.secret_access_key,
                aws_session_token=location.session_token,
                region_name=store.client.meta.region_name,
            )
            config = store.client.meta.config.merge(Config(signature_version="s3v4"))
            client = session.client("s3", endpoint_url=location.endpoint_url, config=config)
            _presigners[store] = client
        return client


def presigned_get_url(
    store: S3Store, bucket: str, key: str, *, expires: int, content_disposition: str | None = None
) -> str:
    """A SigV4 presigned GET URL for `bucket/key`, valid `expires` seconds.

    `content_disposition` is signed in as `response-content-disposition`, so
    the download keeps the name/attachment the old route gave it. No request
    is sent; the URL is computed locally from the client's credentials.
    """
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if content_disposition:
        params["ResponseContentDisposition"] = content_disposition
    try:
        return str(_presigning_client(store).generate_presigned_url("get_object", Params=params, ExpiresIn=expires))
    except Exception as err:  # noqa: BLE001
        raise translate_error(err, what=f"s3://{bucket}/{key}") from err


def get_lifecycle_rules(store: S3Store, bucket: str) -> list[dict[str, Any]]:
    """The bucket's lifecycle rules as boto3 shapes (empty when it has none)."""
    try:
        response = store.client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except Exception as err:  # noqa: BLE001
        if _missing(err, _NO_LIFECYCLE):
            return []
        raise translate_error(err, what=f"s3://{bucket} lifecycle") from err
    return list(response.get("Rules", []))


def put_lifecycle_rules(store: S3Store, bucket: str, rules: list[dict[str, Any]]) -> None:
    """Replace the bucket's lifecycle configuration with `rules` (no rules: delete it)."""
    if not rules:
        _call(store, f"s3://{bucket} lifecycle", "delete_bucket_lifecycle", Bucket=bucket)
        return
    _call(
        store,
        f"s3://{bucket} lifecycle",
        "put_bucket_lifecycle_configuration",
        Bucket=bucket,
        LifecycleConfiguration={"Rules": rules},
    )


def get_versioning(store: S3Store, bucket: str) -> str | None:
    """'Enabled', 'Suspended', or None for a bucket that never had versioning."""
    response = _call(store, f"s3://{bucket} versioning", "get_bucket_versioning", Bucket=bucket)
    status = response.get("Status")
    return str(status) if status else None


def put_versioning(store: S3Store, bucket: str, *, enabled: bool) -> None:
    """Enable versioning, or suspend it (S3 cannot turn it off once enabled)."""
    status = "Enabled" if enabled else "Suspended"
    _call(store, f"s3://{bucket} versioning", "put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": status})


def get_default_encryption(store: S3Store, bucket: str) -> dict[str, Any] | None:
    """The bucket's first default-encryption rule, or None."""
    try:
        response = store.client.get_bucket_encryption(Bucket=bucket)
    except Exception as err:  # noqa: BLE001
        if _missing(err, _NO_ENCRYPTION):
            return None
        raise translate_error(err, what=f"s3://{bucket} encryption") from err
    rules = response.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return dict(rules[0]) if rules else None


def put_default_encryption(store: S3Store, bucket: str, rule: dict[str, Any]) -> None:
    """Set the bucket's default encryption to one rule (boto3 shape)."""
    _call(
        store,
        f"s3://{bucket} encryption",
        "put_bucket_encryption",
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [rule]},
    )


def delete_keys(store: S3Store, bucket: str, keys: Iterable[str]) -> dict[str, str]:
    """Delete up to `DELETE_BATCH` keys in one request; returns {key: error code} for those S3 refused.

    A key that is already gone counts as deleted (S3 answers success for it).
    """
    objects = [{"Key": key} for key in keys]
    assert len(objects) <= DELETE_BATCH, "one DeleteObjects request takes at most 1000 keys"
    if not objects:
        return {}
    response = _call(store, f"s3://{bucket}", "delete_objects", Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    return {str(error.get("Key")): str(error.get("Code")) for error in response.get("Errors", [])}
