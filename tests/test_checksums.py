"""Checksums (migrate/checksums.py): every algorithm a plan may name, full-object CRCs from parts, load-time refusal."""

from __future__ import annotations

import base64
import sys
import zlib

import pytest

from migrate.checksums import CHECKSUM_SIZES, Digests, checksum_problem, combine_part_checksums, full_object_algorithm

# The standard check values over b"123456789" (RevEng catalogue: CRC-32/ISO-HDLC, CRC-32/ISCSI, CRC-64/NVME).
CHECK = {"CRC32": 0xCBF43926, "CRC32C": 0xE3069283, "CRC64NVME": 0xAE8B14860A799888}


@pytest.mark.parametrize("algorithm", sorted(CHECK))
def test_crcs_match_the_standard_check_values(algorithm: str) -> None:
    digests = Digests(algorithm)
    digests.update(b"1234")
    digests.update(memoryview(b"56789"))
    name, value = digests.s3_checksum()  # type: ignore[misc]
    assert name == algorithm and int.from_bytes(base64.b64decode(value), "big") == CHECK[algorithm]


@pytest.mark.parametrize("algorithm", sorted(CHECK))
def test_full_object_crc_combined_from_parts_equals_the_whole(algorithm: str) -> None:
    body = bytes(range(256)) * 997
    cuts = [0, 5000, 5001, 120_000, len(body)]
    parts = []
    for start, end in zip(cuts, cuts[1:]):
        part = Digests(algorithm, md5=False)
        part.update(body[start:end])
        parts.append((part.s3_checksum()[1], end - start))  # type: ignore[index]
    whole = Digests(algorithm, md5=False)
    whole.update(body)
    assert combine_part_checksums(algorithm, parts) == whole.s3_checksum()[1]  # type: ignore[index]


def test_multipart_algorithm_is_a_crc() -> None:
    assert [full_object_algorithm(a) for a in ("SHA256", "CRC32", "CRC32C", "CRC64NVME", None)] == ["CRC64NVME", "CRC32", "CRC32C", "CRC64NVME", None]
    assert set(CHECKSUM_SIZES) == {"SHA256", "CRC32", "CRC32C", "CRC64NVME"}
    assert zlib.crc32(b"123456789") == CHECK["CRC32"]


def test_without_awscrt_the_plan_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    from migrate.errors import PlanError
    from migrate.plan import load_plan

    monkeypatch.setitem(sys.modules, "awscrt", None)  # as if not installed: `import awscrt` raises ImportError
    assert checksum_problem("SHA256") is None and checksum_problem("CRC32") is None
    assert "pip install awscrt" in (checksum_problem("CRC64NVME") or "")
    plan = tmp_path / "p.yaml"  # type: ignore[operator]
    plan.write_text(
        "version: 1\nname: p\nsource: {type: s3, buckets: [src-bucket], endpoint_url: 'http://127.0.0.1:1'}\n"
        "destination: {bucket: dst-bucket, endpoint_url: 'http://127.0.0.1:1'}\ntransfer:\n  checksum_algorithm: CRC64NVME\n"
    )
    with pytest.raises(PlanError, match=r"p.yaml:6: transfer.checksum_algorithm: .*needs the awscrt package.*pip install awscrt, or use SHA256"):
        load_plan(plan)


def test_checksums_fit_tells_part_algorithms_apart() -> None:
    from migrate.checksums import checksums_fit

    sha = base64.b64encode(bytes(32)).decode()
    crc64 = base64.b64encode(bytes(8)).decode()
    assert checksums_fit("CRC64NVME", [crc64, crc64]) and checksums_fit("CRC64NVME", [])
    assert not checksums_fit("CRC64NVME", [sha]) and not checksums_fit("CRC64NVME", [None]) and not checksums_fit("CRC64NVME", ["not base64!"])
    assert checksums_fit(None, [None])
