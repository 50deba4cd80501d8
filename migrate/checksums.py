"""Checksums and part sizes: the digests computed while streaming, shared by run, plan and verify.

Low in the layers (below stores and the stages) so that `inventory`,
`transfer` and `verify` all read one definition.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import zlib
from typing import Any, Callable

from migrate.errors import UserInputError

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


def b64_digest(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# -- checksums ---------------------------------------------------------------
def _crc64nvme() -> Callable[[bytes, int], int]:
    try:
        from awscrt import checksums  # type: ignore[import-not-found]
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise UserInputError("transfer.checksum_algorithm CRC64NVME needs the awscrt package; pip install awscrt, or use SHA256") from err
    return checksums.crc64nvme  # type: ignore[no-any-return]


class Digests:
    """SHA-256, optionally MD5, and the destination checksum algorithm over a stream of chunks.

    MD5 is the slow one (about a third of SHA-256's speed with SHA-NI), so it
    is computed only where something compares it: a plain-MD5 source eTag, or
    Content-MD5 when no other checksum protects the upload.
    """

    def __init__(self, algorithm: str | None, *, md5: bool = True):
        self.algorithm = algorithm
        self.md5: Any = hashlib.md5() if md5 else None
        self.sha256 = hashlib.sha256()
        self._crc = 0
        self._crc64 = _crc64nvme() if algorithm == "CRC64NVME" else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self.md5 is not None:
            self.md5.update(data)
        self.sha256.update(data)
        if self.algorithm == "CRC32":
            self._crc = zlib.crc32(data, self._crc)
        elif self._crc64 is not None:
            self._crc = self._crc64(bytes(data), self._crc)

    def s3_checksum(self) -> tuple[str, str] | None:
        """(algorithm, base64 value) for the x-amz-checksum-* header."""
        if self.algorithm == "SHA256":
            return "SHA256", b64_digest(self.sha256.digest())
        if self.algorithm == "CRC32":
            return "CRC32", b64_digest(self._crc.to_bytes(4, "big"))
        if self.algorithm == "CRC64NVME":
            return "CRC64NVME", b64_digest(self._crc.to_bytes(8, "big"))
        return None


def composite_checksum(part_checksums: list[str]) -> str:
    """S3's composite checksum of a multipart upload: hash of the part digests, then "-N"."""
    joined = b"".join(base64.b64decode(value) for value in part_checksums)
    return f"{b64_digest(hashlib.sha256(joined).digest())}-{len(part_checksums)}"


def choose_part_size(size: int, part_size: int) -> int:
    """The configured part size, grown (to whole MiB) when the object would need more than 10,000 parts."""
    if math.ceil(size / part_size) <= MAX_PARTS:
        return part_size
    return math.ceil(size / MAX_PARTS / MiB) * MiB


def is_plain_md5(etag: str | None) -> bool:
    return bool(etag) and bool(_PLAIN_MD5.match(etag or ""))
