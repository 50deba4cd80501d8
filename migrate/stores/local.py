"""A local filesystem store: a folder that behaves like an S3 service.

Serves as a source (list, head, ranged reads), as a plan destination
(`destination: {type: local, path: ..., bucket: ...}`, through the same
put/multipart primitives `S3Store` offers, so `migrate run` needs no special
case) and as a backup target.

Layout under the root folder::

    <root>/<bucket>/<encoded key>           the object's bytes
    <root>/.migrate-store/meta/<bucket>/<h[:2]>/<h>.json
                                            its metadata (h = SHA-256 of the key)
    <root>/.migrate-store/tmp/              files being written
    <root>/.migrate-store/uploads/<id>/     unfinished multipart uploads

With `LocalStore(root, bucket=NAME)` the single bucket NAME is the root
folder itself (a backup target: `<path>/bodies/...`); other names are refused.

Key to path mapping (`key_to_relpath`, reversible with `relpath_to_key`): the
key is split on "/" and each segment kept as UTF-8 text except that
- "%" and control characters (U+0000-U+001F, U+007F) become %XX,
- a leading "." becomes %2E (so "." and ".." never walk up, and no key can
  reach the hidden `.migrate-store` folder or any other dotfile),
- an empty segment ("a//b", a trailing "/") becomes the segment "%00".
NUL is refused (Supabase refuses it too), as is an encoded segment longer
than 255 bytes (NAME_MAX of common filesystems). The root is resolved once
and every path is checked to stay below it. A key that is both an object and
a "folder" of other objects ("a" and "a/b", legal in S3) cannot be stored:
the second write fails for that object with a clear message.

Durability of every write: bytes into a temporary file in the store's own
tmp folder (same filesystem), fsync, rename into place, fsync of the parent
folder. `if_none_match=True` uses `os.link`, which refuses an existing name
atomically: the same guarantee as S3's conditional write. Metadata is
written (same way) before the bytes, so an object never appears without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from migrate.errors import BucketNotFound, IntegrityError, ObjectError, ObjectNotFound, TransientError
from migrate.stores.base import ObjectInfo, SourceStore
from migrate.stores.s3 import ConditionalWriteFailed, UploadGone

READ_CHUNK = 1024 * 1024
LIST_PAGE = 1000
NAME_MAX = 255
INTERNAL = ".migrate-store"


class UnsafeKey(ObjectError):
    """A key that cannot be mapped to a path below the store's root."""


def _encode_segment(segment: str) -> str:
    if segment == "":
        return "%00"
    out = []
    for index, char in enumerate(segment):
        if char == "%" or ord(char) < 0x20 or char == "\x7f" or (index == 0 and char == "."):
            out.append(f"%{ord(char):02X}")
        else:
            out.append(char)
    return "".join(out)


_ENCODED = re.compile("%(25|2E|[01][0-9A-F]|7F)")


def _decode_segment(name: str) -> str:
    if name == "%00":
        return ""
    return _ENCODED.sub(lambda found: chr(int(found.group(1), 16)), name)


def key_to_relpath(key: str) -> str:
    """The path (relative to the bucket folder) an object key is stored at; see the module docstring."""
    if "\x00" in key:
        raise UnsafeKey(f"{key!r}: contains NUL, which no filesystem path can hold")
    if not key:
        raise UnsafeKey("an empty key cannot be stored")
    segments = [_encode_segment(segment) for segment in key.split("/")]
    for segment in segments:
        if len(segment.encode("utf-8")) > NAME_MAX:
            raise UnsafeKey(f"{key[:80]!r}: a path segment is longer than {NAME_MAX} bytes once encoded; a local folder cannot hold it")
    return "/".join(segments)


def relpath_to_key(relpath: str) -> str:
    """Inverse of `key_to_relpath`."""
    return "/".join(_decode_segment(name) for name in relpath.split("/"))


def _valid_bucket(bucket: str) -> None:
    if not bucket or "/" in bucket or bucket.startswith(".") or "\x00" in bucket or len(bucket.encode()) > NAME_MAX:
        raise UnsafeKey(f"{bucket!r}: not usable as a local bucket folder (non-empty, no '/', not starting with '.')")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(SourceStore):
    """Objects as files below one root folder (see the module docstring for the layout)."""

    kind = "local"

    def __init__(self, root: str | Path, *, bucket: str | None = None):
        self.root = Path(root).expanduser().absolute()
        self.single_bucket = bucket
        self._internal = self.root / INTERNAL

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def describe(self) -> str:
        return str(self.root)

    # -- paths -------------------------------------------------------------
    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise BucketNotFound(f"local store {self.root}: the folder does not exist (or is not a folder); create it or fix the path in the plan")

    def _bucket_dir(self, bucket: str) -> Path:
        if self.single_bucket is not None:
            if bucket != self.single_bucket:
                raise UnsafeKey(f"local store {self.root} holds only {self.single_bucket!r}, not {bucket!r}")
            return self.root
        _valid_bucket(bucket)
        return self.root / bucket

    def path_of(self, bucket: str, key: str) -> Path:
        """Where `key`'s bytes live; never outside the bucket folder."""
        base = self._bucket_dir(bucket)
        path = base / key_to_relpath(key)
        # Belt and braces: the encoding already rules out "..", absolute paths and NUL.
        if os.path.commonpath([os.path.normpath(path), os.path.normpath(base)]) != os.path.normpath(base):
            raise UnsafeKey(f"{key!r}: would be stored outside {base}")
        return path

    def _meta_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(f"{bucket}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()
        return self._internal / "meta" / digest[:2] / f"{digest}.json"

    def _tmp_file(self) -> Path:
        folder = self._internal / "tmp"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.part"

    # -- writing primitives ------------------------------------------------
    def _publish(self, tmp: Path, final: Path, *, if_none_match: bool, what: str) -> None:
        """Move a fully written, fsynced temp file into place; fsync the folder."""
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as err:
            tmp.unlink(missing_ok=True)
            raise ObjectError(f"{what}: a parent of this key is an object itself; a local folder cannot hold both 'a' and 'a/b'") from err
        if final.is_dir():
            tmp.unlink(missing_ok=True)
            raise ObjectError(f"{what}: other objects live below this key; a local folder cannot hold both 'a' and 'a/b'")
        if if_none_match:
            try:
                os.link(tmp, final)
            except FileExistsError:
                tmp.unlink(missing_ok=True)
                raise ConditionalWriteFailed(f"{what}: already exists at the destination") from None
            tmp.unlink()
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)

    def _write_file(self, chunks: Iterator[bytes] | list[bytes]) -> tuple[Path, int, Any, Any]:
        """Bytes into a fsynced temp file; returns (path, size, md5, sha256)."""
        tmp = self._tmp_file()
        md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    size += len(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, size, md5, sha256

    def _write_meta(self, bucket: str, key: str, meta: Mapping[str, Any]) -> None:
        path = self._meta_path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, _, _, _ = self._write_file([json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()])
        self._publish(tmp, path, if_none_match=False, what=f"metadata of {bucket}/{key}")

    @staticmethod
    def _settings(write_args: Mapping[str, Any], *, what: str) -> dict[str, Any]:
        # A local folder has no storage classes or server-side encryption: refuse, never ignore.
        for name in ("storage_class", "sse", "kms_key_id"):
            if write_args.get(name):
                raise ObjectError(f"{what}: {name} cannot apply to a local folder; remove it from the plan for local destinations")
        return {
            "content_type": write_args.get("content_type"),
            "cache_control": write_args.get("cache_control"),
            "content_disposition": write_args.get("content_disposition"),
            # Kept like S3 keeps them (`migrate.headers.CARRIED_HEADERS`); a sidecar written before has none.
            "content_encoding": write_args.get("content_encoding"),
            "content_language": write_args.get("content_language"),
            "expires": write_args.get("expires"),
            "metadata": dict(write_args.get("metadata") or {}),
        }

    def _store(self, bucket: str, key: str, chunks: Iterator[bytes] | list[bytes], *, settings: dict[str, Any], if_none_match: bool,
               etag: str | None = None, sha256_b64: str | None = None, expect_md5: bytes | None = None) -> str:
        what = f"local://{self.root}/{bucket}/{key}"
        self._require_root()
        final = self.path_of(bucket, key)
        tmp, size, md5, sha256 = self._write_file(chunks)
        if expect_md5 is not None and md5.digest() != expect_md5:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"{what}: bytes do not match the Content-MD5 sent")
        etag = etag or md5.hexdigest()
        meta = {**settings, "key": key, "size": size, "etag": etag, "sha256": sha256_b64 or base64.b64encode(sha256.digest()).decode()}
        if if_none_match and final.exists():
            tmp.unlink(missing_ok=True)
            raise ConditionalWriteFailed(f"{what}: already exists at the destination")
        self._write_meta(bucket, key, meta)
        self._publish(tmp, final, if_none_match=if_none_match, what=what)
        return etag

    # -- SourceStore -------------------------------------------------------
    def list_buckets(self) -> list[str]:
        self._require_root()
        if self.single_bucket is not None:
            return [self.single_bucket]
        return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir() and not entry.name.startswith("."))

    def check_bucket(self, bucket: str) -> None:
        """The root must exist (a lost disk is an error, not a fresh empty folder); bucket folders are made on demand."""
        self._require_root()
        self._bucket_dir(bucket)

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        self._require_root()
        base = self._bucket_dir(bucket)
        # Start the walk at the deepest folder the prefix names completely.
        folder_key = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / key_to_relpath(folder_key) if folder_key else base
        keys: list[str] = []
        if start.is_dir():
            for dirpath, dirnames, filenames in os.walk(start):
                here = Path(dirpath)
                if here == base:
                    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                    filenames = [f for f in filenames if not f.startswith(".")]
                for name in filenames:
                    key = relpath_to_key((here / name).relative_to(base).as_posix())
                    if key.startswith(prefix):
                        keys.append(key)
        # S3 lists in UTF-8 byte order; so do we.
        keys.sort(key=lambda k: k.encode("utf-8"))
        for start_index in range(0, len(keys), LIST_PAGE):
            page = [self._info(bucket, key) for key in keys[start_index : start_index + LIST_PAGE]]
            found = [info for info in page if info is not None]
            if found:
                yield found

    def _info(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self.path_of(bucket, key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        meta: dict[str, Any] = {}
        try:
            meta = json.loads(self._meta_path(bucket, key).read_text())
        except (FileNotFoundError, ValueError):
            pass
        if meta.get("size") != stat.st_size or meta.get("key") != key:
            meta = {}  # written by something else (or a stale sidecar): trust only the file itself
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=meta.get("etag"),
            content_type=meta.get("content_type"),
            cache_control=meta.get("cache_control"),
            content_disposition=meta.get("content_disposition"),
            last_modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
            user_metadata={str(k): str(v) for k, v in (meta.get("metadata") or {}).items()},
            checksums={"sha256": meta["sha256"]} if meta.get("sha256") else {},
            content_encoding=meta.get("content_encoding"),
            content_language=meta.get("content_language"),
            expires=meta.get("expires"),
        )

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        self._require_root()
        return self._info(bucket, key)

    def open(self, bucket: str, key: str, *, offset: int = 0, length: int | None = None) -> tuple[ObjectInfo, Iterator[bytes]]:
        what = f"local://{self.root}/{bucket}/{key}"
        info = self.head(bucket, key)
        if info is None:
            raise ObjectNotFound(f"{what}: not found")
        if length == 0:
            return self.empty_read(bucket, key)
        end = info.size if length is None else min(info.size, offset + length)
        try:
            handle = open(self.path_of(bucket, key), "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"{what}: not found") from None
        except OSError as err:
            raise TransientError(f"{what}: cannot open ({err.strerror})") from err
        def chunks() -> Iterator[bytes]:
            with handle:
                handle.seek(offset)
                remaining = max(0, end - offset)
                while remaining:
                    chunk = handle.read(min(READ_CHUNK, remaining))
                    if not chunk:
                        raise TransientError(f"{what}: file ended after {end - offset - remaining} of {end - offset} bytes")
                    remaining -= len(chunk)
                    yield chunk

        return replace(info, size=max(0, end - offset)), chunks()

    # -- destination primitives (the same calls `S3Store` offers) ----------
    def put_object(self, bucket: str, key: str, body: bytes, *, content_md5: bytes | None = None, checksum: tuple[str, str] | None = None,
                   if_none_match: bool = False, sha256_hex: str | None = None, **write_args: Any) -> str:
        """Write a whole object atomically; returns its ETag (MD5 hex, as S3 gives for a single PUT)."""
        settings = self._settings(write_args, what=f"{bucket}/{key}")
        return self._store(bucket, key, [bytes(body)], settings=settings, if_none_match=if_none_match, expect_md5=content_md5)

    def put_stream(self, bucket: str, key: str, chunks: Iterator[bytes], *, if_none_match: bool = False, **write_args: Any) -> str:
        """Write an object from a stream of chunks (no size limit, constant memory)."""
        settings = self._settings(write_args, what=f"{bucket}/{key}")
        return self._store(bucket, key, chunks, settings=settings, if_none_match=if_none_match)

    def delete_object(self, bucket: str, key: str) -> None:
        """Remove an object and its metadata; a missing object is fine (S3 semantics)."""
        path = self.path_of(bucket, key)
        try:
            path.unlink()
            _fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        self._meta_path(bucket, key).unlink(missing_ok=True)

    def _upload_dir(self, upload_id: str) -> Path:
        if not upload_id or not all(ch in "0123456789abcdef" for ch in upload_id):
            raise UploadGone(f"upload {upload_id!r}: not an upload id of this store")
        return self._internal / "uploads" / upload_id

    def create_multipart_upload(self, bucket: str, key: str, *, checksum_algorithm: str | None = None, **write_args: Any) -> str:
        self._require_root()
        self.path_of(bucket, key)
        settings = self._settings(write_args, what=f"{bucket}/{key}")
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(upload_id)
        folder.mkdir(parents=True)
        (folder / "upload.json").write_text(json.dumps({"bucket": bucket, "key": key, "settings": settings}))
        return upload_id

    def _upload(self, bucket: str, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        folder = self._upload_dir(upload_id)
        try:
            info = json.loads((folder / "upload.json").read_text())
        except FileNotFoundError:
            raise UploadGone(f"{bucket}/{key}: the multipart upload no longer exists") from None
        if info["bucket"] != bucket or info["key"] != key:
            raise UploadGone(f"{bucket}/{key}: upload {upload_id} belongs to another key")
        return folder, info

    def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int, body: bytes, *, content_md5: bytes | None = None,
                    checksum: tuple[str, str] | None = None, sha256_hex: str | None = None) -> str:
        folder, _ = self._upload(bucket, key, upload_id)
        tmp, size, md5, _ = self._write_file([bytes(body)])
        if content_md5 is not None and md5.digest() != content_md5:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"{bucket}/{key} part {part_number}: bytes do not match the Content-MD5 sent")
        self._publish(tmp, folder / f"{part_number:05d}", if_none_match=False, what=f"{bucket}/{key} part {part_number}")
        return md5.hexdigest()

    def list_parts(self, bucket: str, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
        folder, _ = self._upload(bucket, key, upload_id)
        parts: dict[int, dict[str, Any]] = {}
        for entry in sorted(folder.iterdir()):
            if entry.name.isdigit():
                md5 = hashlib.md5()
                with open(entry, "rb") as handle:
                    for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
                        md5.update(chunk)
                parts[int(entry.name)] = {"etag": md5.hexdigest(), "size": entry.stat().st_size}
        return parts

    def complete_multipart_upload(self, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], *, if_none_match: bool = False,
                                  full_object_checksum: tuple[str, str] | None = None, expected_size: int | None = None) -> str:
        """Join the listed parts in order into the object (atomically); ETag as S3 computes it.

        With `full_object_checksum` (algorithm, base64 CRC) the joined bytes are checked against it, as S3 does
        for `ChecksumType=FULL_OBJECT`; `expected_size` is S3Store's folder-key check and means nothing here.
        """
        folder, info = self._upload(bucket, key, upload_id)
        crc_state: list[int] = [0]
        crc = None
        if full_object_checksum is not None:
            from migrate.checksums import CHECKSUM_SIZES, _crc_function, b64_digest

            crc = _crc_function(full_object_checksum[0])
        numbers = [int(part["PartNumber"]) for part in parts]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise ObjectError(f"{bucket}/{key}: parts must be listed once each, in ascending order")
        digests: list[bytes] = []

        def joined() -> Iterator[bytes]:
            for part in parts:
                path = folder / f"{int(part['PartNumber']):05d}"
                if not path.exists():
                    raise ObjectError(f"{bucket}/{key}: part {part['PartNumber']} was never uploaded")
                md5 = hashlib.md5()
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
                        md5.update(chunk)
                        if crc is not None:
                            crc_state[0] = crc(chunk, crc_state[0])
                        yield chunk
                if part.get("ETag") and str(part["ETag"]).strip('"') != md5.hexdigest():
                    raise ObjectError(f"{bucket}/{key}: part {part['PartNumber']} ETag does not match")
                digests.append(md5.digest())

        etag_holder: list[str] = []

        def with_etag() -> Iterator[bytes]:
            yield from joined()
            if full_object_checksum is not None:
                algorithm, expected = full_object_checksum
                if b64_digest(crc_state[0].to_bytes(CHECKSUM_SIZES[algorithm], "big")) != expected:
                    raise IntegrityError(f"{bucket}/{key}: the joined parts do not match the full-object {algorithm} sent")
            etag_holder.append(f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}")

        # The multipart ETag is only known at the end of the stream; write, then fix up the metadata.
        self._store(bucket, key, with_etag(), settings=info["settings"], if_none_match=if_none_match, etag="pending")
        meta_path = self._meta_path(bucket, key)
        meta = json.loads(meta_path.read_text())
        meta["etag"] = etag_holder[0]
        self._write_meta(bucket, key, meta)
        shutil.rmtree(folder, ignore_errors=True)
        return etag_holder[0]

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            folder, _ = self._upload(bucket, key, upload_id)
        except UploadGone:
            return
        shutil.rmtree(folder, ignore_errors=True)

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload_id) of every unfinished multipart upload under `prefix`."""
        uploads: list[tuple[str, str]] = []
        folder = self._internal / "uploads"
        if not folder.is_dir():
            return uploads
        for entry in sorted(folder.iterdir()):
            try:
                info = json.loads((entry / "upload.json").read_text())
            except (FileNotFoundError, ValueError):
                continue
            if info["bucket"] == bucket and info["key"].startswith(prefix):
                uploads.append((info["key"], entry.name))
        return uploads

    def supports_conditional_writes(self, bucket: str, key: str | None = None) -> bool:
        """Always: `os.link` refuses an existing name atomically (no probe object is written)."""
        return True

    def clean_temporary(self) -> int:
        """Remove temp files left by killed writers (call only while holding the writer's lock). Returns how many."""
        folder = self._internal / "tmp"
        removed = 0
        if folder.is_dir():
            for entry in folder.iterdir():
                entry.unlink(missing_ok=True)
                removed += 1
        return removed
