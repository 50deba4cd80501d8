"""Object bytes on local disk, one immutable file per object version.

Like the real server (objects are stored under their `version`, see
src/storage/uploader.ts), a write never touches the bytes a reader may be
streaming: it goes to a temporary file that is renamed into place with
`os.replace` only once complete, and only then is the catalog row written.
A crash mid-upload leaves at most a stray file under `tmp/`, never a half
object. Files are not fsync'ed: this survives a killed process, not a power
cut, which is all a test and benchmark server needs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator


@dataclass
class Incoming:
    """An upload's payload and the metadata that came with it (REST or S3), before it is stored."""

    mimetype: str
    cache_control: str
    user_metadata: Any
    chunks: Iterator[bytes]
    declared_length: int | None


class BlobTooLarge(Exception):
    """More bytes arrived than the limit allows."""


class BlobWriter:
    """Stream bytes into a temporary file, counting them and hashing (MD5) as they come."""

    def __init__(self, store: "BlobStore", *, limit: int | None):
        self._store = store
        self._limit = limit
        self.version = str(uuid.uuid4())
        self._tmp_path = store.tmp_dir / f"{self.version}.part"
        self._file: BinaryIO | None = open(self._tmp_path, "wb")
        self._md5 = hashlib.md5()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; raises BlobTooLarge past the limit."""
        assert self._file is not None
        self.size += len(chunk)
        if self._limit is not None and self.size > self._limit:
            raise BlobTooLarge()
        self._md5.update(chunk)
        self._file.write(chunk)

    @property
    def etag(self) -> str:
        """The S3-style ETag of the bytes: the quoted MD5 hex digest."""
        return f'"{self._md5.hexdigest()}"'

    def commit(self) -> str:
        """Move the complete file into place; returns its version."""
        assert self._file is not None
        self._file.close()
        self._file = None
        os.replace(self._tmp_path, self._store.path_for(self.version))
        return self.version

    def abort(self) -> None:
        """Drop the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp_path.unlink(missing_ok=True)


class BlobStore:
    """`<root>/blobs/<v[:2]>/<version>` holds bytes; `<root>/tmp` holds writes in progress."""

    def __init__(self, root: Path):
        self.root = root
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Versions are UUIDs: their first two hex digits spread files over 256
        # directories, all made now so a write never needs a mkdir.
        for index in range(256):
            (self.blob_dir / f"{index:02x}").mkdir(parents=True, exist_ok=True)
        # Writes cut short by an earlier crash were never visible; drop them.
        for stale in self.tmp_dir.glob("*.part"):
            stale.unlink(missing_ok=True)

    def path_for(self, version: str) -> Path:
        """Where the bytes of `version` live."""
        return self.blob_dir / version[:2] / version

    def writer(self, *, limit: int | None = None) -> BlobWriter:
        """A writer for a new version, refusing more than `limit` bytes."""
        return BlobWriter(self, limit=limit)

    def open(self, version: str) -> BinaryIO:
        """The bytes of `version`, for reading."""
        return open(self.path_for(version), "rb")

    def delete(self, version: str | None) -> None:
        """Remove the bytes of `version` (no error if already gone)."""
        if version:
            self.path_for(version).unlink(missing_ok=True)

    def clone(self, version: str) -> str:
        """A new version with the same bytes (a hard link: versions are never modified)."""
        new_version = str(uuid.uuid4())
        target = self.path_for(new_version)
        try:
            os.link(self.path_for(version), target)
        except OSError:
            shutil.copyfile(self.path_for(version), target)
        return new_version
