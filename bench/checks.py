"""Is a contender's copy right? Count, sizes, and MD5s of the bytes read back.

Run by the harness after each timed run, outside the timing. A wrong copy
marks the run invalid: its figures are shown but never enter a median.
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.datasets import ExpectedObject

READ_CHUNK = 8 * 1024 * 1024


@dataclass
class CheckResult:
    ok: bool
    objects: int
    md5_checked: int
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return f"ok ({self.objects} objects, {self.md5_checked} MD5s)"
        return "WRONG: " + "; ".join(self.problems[:3]) + (f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else "")


def _md5_of(client: Any, bucket: str, key: str) -> str:
    digest = hashlib.md5()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        for chunk in iter(lambda: body.read(READ_CHUNK), b""):
            digest.update(chunk)
    finally:
        body.close()
    return digest.hexdigest()


def check_copy(
    client: Any,
    bucket: str,
    expected: dict[str, ExpectedObject],
    *,
    sample: int | None,
    seed: int,
) -> CheckResult:
    """Compare a destination bucket with what the dataset holds.

    `sample=None` reads back every object (used for the large objects of
    dataset B); otherwise `sample` objects picked with `seed`.
    """
    problems: list[str] = []
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = int(item["Size"])
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    wrong_size = [key for key, item in expected.items() if key in found and found[key] != item.size]
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if wrong_size:
        problems.append(f"{len(wrong_size)} of the wrong size (e.g. {wrong_size[0]})")
    present = sorted(key for key in expected if key in found)
    if sample is None or sample >= len(present):
        chosen = present
    else:
        chosen = random.Random(seed).sample(present, sample)
    with ThreadPoolExecutor(max_workers=8 if sample is not None else 2) as pool:
        digests = list(pool.map(lambda key: (key, _md5_of(client, bucket, key)), chosen))
    bad = [key for key, md5 in digests if md5 != expected[key].md5]
    if bad:
        problems.append(f"{len(bad)} of {len(chosen)} MD5s differ (e.g. {bad[0]})")
    return CheckResult(ok=not problems, objects=len(found), md5_checked=len(chosen), problems=problems)


def check_user_metadata(client: Any, bucket: str, expected: dict[str, dict[str, str]], *, sample: int, seed: int) -> tuple[int, int]:
    """(objects whose user metadata arrived intact, objects checked): a HEAD of `sample` objects picked with `seed`.

    Informational for the report (s5cmd through local disk carries none); a
    `migrate` copy without it is still a valid copy of the bytes.
    """
    keys = sorted(expected)
    chosen = keys if sample >= len(keys) else random.Random(seed).sample(keys, sample)

    def carried(key: str) -> bool:
        head = client.head_object(Bucket=bucket, Key=key)
        found = {name.lower(): value for name, value in head.get("Metadata", {}).items()}
        return all(found.get(name.lower()) == value for name, value in expected[key].items())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(carried, chosen))
    return sum(results), len(chosen)
