"""Checksums and part sizes: the digests computed while streaming, shared by run, plan and verify.

Low in the layers (below stores and the stages) so that `inventory`,
`transfer` and `verify` all read one definition.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
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
#: Every checksum a plan may name: x-amz-checksum-* algorithm -> digest size in bytes.
CHECKSUM_SIZES: dict[str, int] = {"SHA256": 32, "CRC32": 4, "CRC32C": 4, "CRC64NVME": 8}
#: The CRC algorithms S3 can check as one full-object checksum of a multipart upload.
FULL_OBJECT_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")
_NEEDS_AWSCRT = ("CRC32C", "CRC64NVME")


_AWSCRT_MISSING = (
    "transfer.checksum_algorithm CRC32C/CRC64NVME needs the awscrt package (a dependency of migrate): pip install awscrt, or use SHA256"
)


def _awscrt_checksums() -> Any:
    try:
        from awscrt import checksums  # type: ignore[import-not-found]
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise UserInputError(_AWSCRT_MISSING) from err
    return checksums


def checksum_problem(algorithm: str | None) -> str | None:
    """Why `algorithm` cannot be used in this installation (for the plan loader), or None."""
    # Looked up, not imported: importing awscrt takes ~60 ms, more than loading the whole plan.
    if algorithm in _NEEDS_AWSCRT and importlib.util.find_spec("awscrt") is None:
        return _AWSCRT_MISSING
    return None


def _crc64nvme() -> Callable[[bytes, int], int]:
    return _awscrt_checksums().crc64nvme  # type: ignore[no-any-return]


def _crc_function(algorithm: str) -> Callable[[bytes, int], int]:
    if algorithm == "CRC32":
        return zlib.crc32
    crt = _awscrt_checksums()
    return crt.crc32c if algorithm == "CRC32C" else crt.crc64nvme  # type: ignore[no-any-return]


def full_object_algorithm(algorithm: str | None) -> str | None:
    """The checksum a multipart upload carries: the plan's CRC, or CRC64NVME when the plan names SHA256.

    S3 stores a whole-object checksum of a multipart object only for CRCs
    (`ChecksumType=FULL_OBJECT`); SHA-256 would only give a composite
    checksum of the parts, which fast verify cannot compare with the bytes.
    None (Content-MD5 only) stays None.
    """
    if algorithm is None:
        return None
    return algorithm if algorithm in FULL_OBJECT_ALGORITHMS else "CRC64NVME"


def checksums_fit(algorithm: str | None, values: list[str | None]) -> bool:
    """Whether recorded part checksums are `algorithm`'s (by digest size): parts of one upload must all use one."""
    size = CHECKSUM_SIZES.get(algorithm or "")
    for value in values:
        try:
            found = len(base64.b64decode(value, validate=True)) if value else None
        except ValueError:
            return False
        if found != size:
            return False
    return True


def combine_part_checksums(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """The full-object CRC of the concatenated parts from each part's (base64 CRC, size), in part order.

    What S3 itself computes for `ChecksumType=FULL_OBJECT`; works after a
    resume too, since no part is read again.
    """
    crt = _awscrt_checksums()
    combine = {"CRC32": crt.combine_crc32, "CRC32C": crt.combine_crc32c, "CRC64NVME": crt.combine_crc64nvme}[algorithm]
    size = CHECKSUM_SIZES[algorithm]
    total: int | None = None
    for value, length in parts:
        crc = int.from_bytes(base64.b64decode(value), "big")
        total = crc if total is None else combine(total, crc, length)
    return b64_digest((total or 0).to_bytes(size, "big"))


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
        self._crc_update = _crc_function(algorithm) if algorithm in FULL_OBJECT_ALGORITHMS else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self.md5 is not None:
            self.md5.update(data)
        self.sha256.update(data)
        if self._crc_update is not None:
            # zlib and awscrt read any buffer: no copy of a bytearray or a view.
            self._crc = self._crc_update(data, self._crc)  # type: ignore[arg-type]

    def s3_checksum(self) -> tuple[str, str] | None:
        """(algorithm, base64 value) for the x-amz-checksum-* header."""
        if self.algorithm == "SHA256":
            return "SHA256", b64_digest(self.sha256.digest())
        if self.algorithm in FULL_OBJECT_ALGORITHMS:
            return self.algorithm, b64_digest(self._crc.to_bytes(CHECKSUM_SIZES[self.algorithm], "big"))
        return None


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of a completed multipart upload: MD5 of the parts' binary MD5s, then "-N"."""
    joined = b"".join(bytes.fromhex(etag.strip('"')) for etag in part_etags)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_etags)}"


def choose_part_size(size: int, part_size: int) -> int:
    """The configured part size, grown (to whole MiB) when the object would need more than 10,000 parts."""
    if math.ceil(size / part_size) <= MAX_PARTS:
        return part_size
    return math.ceil(size / MAX_PARTS / MiB) * MiB


def is_plain_md5(etag: str | None) -> bool:
    return bool(etag) and bool(_PLAIN_MD5.match(etag or ""))
