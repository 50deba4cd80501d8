"""The conflict policy of the `run` stage: what to do when the destination already has a key.

`skip` (default) and `fail` need to know whether the key exists. Where the
destination honours `If-None-Match: *` (found out with one probe object per
run, journaled before it is written so a killed run's probe is deleted at the
next start) the write itself answers 412 and no HEAD is sent; elsewhere a
HEAD precedes each write. A key already holding exactly the planned bytes
counts as migrated under every policy. `ConflictPolicy` is a mixin of
`migrate.transfer.Transfer`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid

from migrate.checksums import is_plain_md5
from migrate.errors import ObjectError, ObjectNotFound
from migrate.journal import STATE_SKIPPED
from migrate.records import ObjectRecord
from migrate.stores.base import ObjectInfo
from migrate.stores.s3 import ConditionalWriteFailed
from migrate.transfer_multipart import EngineState, _crash_point, _sent

log = logging.getLogger("migrate.transfer")

CONFLICT_POLICIES = ("skip", "overwrite", "fail")


class ConflictPolicy(EngineState):
    """The engine's conflict steps: the conditional-write probe, and the policy applied before and after a write."""

    conditional_writes: bool

    def _probe_conditional_writes(self, bucket: str) -> bool:
        """Does the destination refuse an If-None-Match: * write to an existing key? One probe object, deleted after.

        The probe key is journaled (committed) before it is written and
        forgotten once it is deleted, so a run killed mid-probe leaves a key
        that `remove_stray_probes` deletes at the next start: no object
        outside the plan stays at the destination.
        """
        if self.options.conditional_writes is not None:
            return self.options.conditional_writes
        if self.options.on_conflict == "overwrite":
            return False
        key = f".migrate-probe-{uuid.uuid4().hex}"
        self.journal.add_probe(bucket, key)
        if os.environ.get("MIGRATE_TEST_KILL_AT") == "after-probe-write":
            stub = ObjectRecord(source_bucket=bucket, source_key=key, size=0)
            self.destination.put_object(bucket, key, b"", content_md5=hashlib.md5(b"").digest(), **self._write_args(stub, None))
            _crash_point("after-probe-write")
        supported = self.destination.supports_conditional_writes(bucket, key)
        self._delete_probe(bucket, key)
        return supported

    def remove_stray_probes(self) -> None:
        """Delete probe objects an earlier, killed run may have left (their keys were journaled first)."""
        for bucket, key in self.journal.probes():
            self._delete_probe(bucket, key)

    def _delete_probe(self, bucket: str, key: str) -> None:
        stub = ObjectRecord(source_bucket=bucket, source_key=key, size=0)
        try:
            self._retry(lambda: self.destination.delete_object(bucket, key), stub)
        except ObjectNotFound:
            pass
        except ObjectError as err:
            log.warning("could not delete the probe object s3://%s/%s: %s", bucket, key, err)
            return
        self.journal.forget_probe(bucket, key)

    def _conflict_check(self, record: ObjectRecord, owned: bool) -> bool:
        """Apply the conflict policy before writing. True: go ahead (with If-None-Match when not overwriting).

        Where the destination honours conditional writes, no HEAD is needed:
        the write itself answers 412 when the key exists (see `_settle_existing`).
        """
        if owned or self.options.on_conflict == "overwrite" or self.conditional_writes:
            return True
        assert record.dest_bucket and record.dest_key
        existing = self._head_destination(record)
        if existing is None:
            return True
        self._settle_existing(record, existing)
        return False

    def _settle_existing(self, record: ObjectRecord, existing: ObjectInfo | None = None) -> None:
        """The destination already has the key and the policy forbids overwriting: done, skipped, or failed."""
        assert record.dest_bucket and record.dest_key
        if existing is None:
            existing = self._head_destination(record)
        if existing is not None and existing.size == record.size and is_plain_md5(record.source_etag) and existing.etag == record.source_etag:
            # Exactly the planned bytes are already there (e.g. written by a run
            # killed before its journal caught up): migrated, under every policy.
            # The headers such a write carried are journaled for verify; taken from the GET, they need the source's.
            source = self._head_source(record) if self.source.headers_on_read else None  # type: ignore[attr-defined]
            sent = _sent(self._write_args(record, source))  # type: ignore[attr-defined]
            self.journal.done(
                record, sha256=None, md5=record.source_etag, dest_etag=existing.etag, dest_checksum=None, checksum_algorithm=None, deferred=True, sent_headers=sent
            )
        elif self.options.on_conflict == "skip":
            etag = existing.etag if existing is not None else None
            self.journal.done(record, sha256=None, md5=None, dest_etag=etag, dest_checksum=None, checksum_algorithm=None, state=STATE_SKIPPED, deferred=True)
        else:
            raise ConditionalWriteFailed(
                f"s3://{record.dest_bucket}/{record.dest_key}: already exists and destination.on_conflict is 'fail'; "
                "remove it, or set on_conflict to skip or overwrite"
            )
        with self._lock:
            self.result.skipped_existing += 1
        self.progress.advance(objects=1, bytes_done=record.size)

    def _head_destination(self, record: ObjectRecord) -> ObjectInfo | None:
        assert record.dest_bucket and record.dest_key

        def head() -> ObjectInfo | None:
            with self._talking_to(self.destination.endpoint):
                return self.destination.head(record.dest_bucket, record.dest_key)  # type: ignore[arg-type]

        return self._retry(head, record)  # type: ignore[no-any-return]
