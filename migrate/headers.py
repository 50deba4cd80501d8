"""The headers an object is written with: the record's (the rules') on top of the source's as read. Pure, no I/O.

`run` writes them (`source_headers`) and journals them (`sent_headers_json`);
`verify` compares the destination with what was journaled, or with the
source's own headers when no journal row says (`migrate.verify_checks`).

Content-Encoding, Content-Language and Expires (`CARRIED_HEADERS`) have no
manifest column and no rule sets them: they travel exactly as the source's
read answered them (S3 only; Supabase Storage keeps neither, see README,
"Headers from the GET"). A `Content-Encoding: gzip` object keeps its stored,
compressed bytes: no reader of ours decodes a body (the lean S3 path and the
Supabase reader use `http.client`, which never decodes; boto3 reads with
urllib3's `decode_content=False`, botocore/httpsession.py).
"""

from __future__ import annotations

from typing import Any

from migrate.errors import ObjectError
from migrate.metadata import metadata_problems
from migrate.records import ObjectRecord
from migrate.stores.base import ObjectInfo

#: Headers carried from the source's read as they are (`ObjectInfo` fields, write settings and journal keys).
CARRIED_HEADERS: tuple[str, ...] = ("content_encoding", "content_language", "expires")


def carried_headers(source: ObjectInfo | None) -> dict[str, str | None]:
    """Content-Encoding, Content-Language and Expires as the source answered them (all None without a read)."""
    return {name: getattr(source, name) if source is not None else None for name in CARRIED_HEADERS}


def source_headers(record: ObjectRecord, source: ObjectInfo | None, *, headers_on_read: bool) -> dict[str, Any]:
    """Content-Type, Cache-Control, Content-Disposition, the carried headers and user metadata to write for `record`.

    The record's values (the plan's rules on top of what the inventory saw)
    win. Where the source's read answers the object's headers
    (`SourceStore.headers_on_read`: S3, whose plan sends no HEAD and leaves
    these manifest columns null), the source's headers as read fill in the
    rest and the rules' user metadata goes on top of the source's, exactly
    as the plan would have merged them. Content-Type falls back to the
    source's, then to S3's default. User metadata S3 cannot carry fails the
    object (`plan` cannot see it without a HEAD). The carried headers come
    from the read alone (`CARRIED_HEADERS`).
    """
    content_type = record.content_type or (source.content_type if source is not None else None) or "application/octet-stream"
    cache_control, disposition, metadata = record.cache_control, record.content_disposition, record.user_metadata
    if headers_on_read and source is not None:
        cache_control = cache_control or source.cache_control
        disposition = disposition or source.content_disposition
        if source.user_metadata:
            metadata = {**source.user_metadata, **metadata}
            problems = metadata_problems(metadata)
            if problems:
                raise ObjectError(
                    f"{record.source_bucket}/{record.source_key}: user metadata S3 cannot carry ({'; '.join(problems)}); exclude the object in the plan"
                )
    return {"content_type": content_type, "cache_control": cache_control, "content_disposition": disposition, "metadata": metadata, **carried_headers(source)}


__all__ = ["CARRIED_HEADERS", "carried_headers", "source_headers"]
