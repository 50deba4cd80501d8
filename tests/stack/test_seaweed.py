"""What the SeaweedFS S3 server does (and does not do) that migrate relies on.

Each test pins one finding listed in `migrate.stack.seaweed`'s docstring, so a
SeaweedFS upgrade that changes behaviour shows up here first.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
import stat
import urllib.error
import urllib.parse
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from migrate.stack.seaweed import SeaweedServer, launch, s3_client

MiB = 1024 * 1024

# CRC-64/NVME (reflected polynomial 0x9a6c9329ac4bc9b5). boto3 computes it only
# with botocore[crt], which the tests do not need: a table-driven copy is enough
# for the few KiB-MiB bodies below.
_CRC64_TABLE: list[int] = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x9A6C9329AC4BC9B5 if _crc & 1 else _crc >> 1
    _CRC64_TABLE.append(_crc)


@functools.lru_cache(maxsize=16)
def crc64nvme(data: bytes) -> str:
    """Base64 of the big-endian CRC-64/NVME of `data`, as S3 headers carry it."""
    crc = 0xFFFFFFFFFFFFFFFF
    table = _CRC64_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return base64.b64encode((crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def error_code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return str(response["Error"].get("Code")), int(response["ResponseMetadata"]["HTTPStatusCode"])


def exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
            return False
        raise
    return True


def test_crc64nvme_matches_the_standard_check_value() -> None:
    assert base64.b64decode(crc64nvme(b"123456789")).hex() == "ae8b14860a799888"


# --- the launcher ------------------------------------------------------------


def test_launch_keeps_the_secret_out_of_argv_and_logs(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="a", Body=b"x")
    argv = Path(f"/proc/{seaweed.process.pid}/cmdline").read_bytes().split(b"\0")
    assert seaweed.secret_key.encode() not in b" ".join(argv)
    assert b"-ip.bind=127.0.0.1" in argv
    assert seaweed.secret_key not in seaweed.process.log_path.read_text(errors="replace")
    identities = seaweed.data_dir / "s3-identities.json"
    assert stat.S_IMODE(identities.stat().st_mode) == 0o600
    assert seaweed.endpoint_url.startswith("http://127.0.0.1:")


def test_wrong_secret_is_rejected(seaweed: SeaweedServer) -> None:
    client = s3_client(endpoint_url=seaweed.endpoint_url, access_key=seaweed.access_key, secret_key="wrong", max_attempts=1)
    with pytest.raises(ClientError) as err:
        client.list_buckets()
    assert error_code(err) == ("SignatureDoesNotMatch", 403)


def test_thirty_buckets_each_get_writable_volumes(make_s3_bucket: Any, s3_client: Any) -> None:
    # Every bucket is a collection with its own volumes; a volume limit that is
    # too low shows up as failed writes once a few dozen buckets exist.
    buckets = [make_s3_bucket() for _ in range(30)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: s3_client.put_object(Bucket=b, Key="k", Body=b"v" * 1000), buckets))
    assert {s3_client.get_object(Bucket=b, Key="k")["Body"].read() for b in buckets} == {b"v" * 1000}


def test_data_survives_a_restart(tmp_path: Path) -> None:
    # `stack down` then `stack up` reuses the data dir; SSE-S3 objects must
    # still decrypt (the key-encryption key is kept in the data dir).
    first = launch(data_dir=tmp_path / "sw", access_key="AKRESTART", secret_key="restart-secret")
    try:
        client = first.client()
        client.create_bucket(Bucket="keep")
        body = os.urandom(6 * MiB)
        client.put_object(Bucket="keep", Key="plain", Body=body, ContentType="application/x-test")
        client.put_object(Bucket="keep", Key="sealed", Body=b"secret bytes", ServerSideEncryption="AES256")
    finally:
        first.stop()
    second = launch(data_dir=tmp_path / "sw", access_key="AKRESTART", secret_key="restart-secret")
    try:
        client = second.client()
        got = client.get_object(Bucket="keep", Key="plain")
        assert got["Body"].read() == body
        assert got["ContentType"] == "application/x-test"
        assert client.get_object(Bucket="keep", Key="sealed")["Body"].read() == b"secret bytes"
    finally:
        second.stop()


# --- objects -----------------------------------------------------------------


def test_put_keeps_http_headers_and_user_metadata(s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(
        Bucket=s3_bucket,
        Key="img/a.png",
        Body=b"\x89PNG\r\n\x1a\n" + b"0" * 100,
        ContentType="image/png",
        CacheControl="max-age=3600",
        ContentDisposition='attachment; filename="a.png"',
        ContentLanguage="en",
        Expires=datetime(2030, 1, 1, tzinfo=timezone.utc),
        Metadata={"owner": "alice", "supabase-id": "0b7e"},
    )
    head = s3_client.head_object(Bucket=s3_bucket, Key="img/a.png")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=3600"
    assert head["ContentDisposition"] == 'attachment; filename="a.png"'
    assert head["ContentLanguage"] == "en"
    assert head["Expires"] == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert head["Metadata"] == {"owner": "alice", "supabase-id": "0b7e"}
    assert head["ContentLength"] == 108
    # Single-part ETag is the MD5 of the body, as on AWS.
    assert head["ETag"] == '"%s"' % hashlib.md5(b"\x89PNG\r\n\x1a\n" + b"0" * 100).hexdigest()
    s3_client.copy_object(Bucket=s3_bucket, Key="img/b.png", CopySource={"Bucket": s3_bucket, "Key": "img/a.png"})
    copied = s3_client.head_object(Bucket=s3_bucket, Key="img/b.png")
    assert (copied["ContentType"], copied["CacheControl"], copied["Metadata"]) == (
        "image/png",
        "max-age=3600",
        {"owner": "alice", "supabase-id": "0b7e"},
    )


def test_zero_byte_objects_and_odd_keys(s3_client: Any, s3_bucket: str) -> None:
    keys = [
        "docs/.emptyFolderPlaceholder",
        "reports/Q1 summary (final).pdf",
        "ünïcode/naïve café.txt",
        "a+b=c&d;e,f@g$h.txt",
        "/".join(["deep"] * 8) + "/leaf.txt",
    ]
    for key in keys:
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"" if key.endswith("Placeholder") else key.encode())
    listed = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert sorted(listed) == sorted(keys)
    head = s3_client.head_object(Bucket=s3_bucket, Key="docs/.emptyFolderPlaceholder")
    assert head["ContentLength"] == 0
    assert head["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3_client.get_object(Bucket=s3_bucket, Key="ünïcode/naïve café.txt")["Body"].read() == "ünïcode/naïve café.txt".encode()



def test_path_like_keys_are_normalised_like_file_paths(s3_client: Any, s3_bucket: str) -> None:
    """botocore sends each key as it is (S3SigV4Auth._normalize_url_path: "For S3, we do not normalize the path"); SeaweedFS maps it to a filer path."""
    for key in ("a//b.txt", "/lead", "x//", "m//k"):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"12345")
    s3_client.copy_object(Bucket=s3_bucket, Key="c//opy", CopySource={"Bucket": s3_bucket, "Key": "lead"})
    upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="mp//k")["UploadId"]
    part = s3_client.upload_part(Bucket=s3_bucket, Key="mp//k", UploadId=upload, PartNumber=1, Body=b"12345")["ETag"]
    s3_client.complete_multipart_upload(Bucket=s3_bucket, Key="mp//k", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]})
    for key in ("a/./b", "a/../b"):
        with pytest.raises(ClientError) as err:
            s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"12345")
        assert error_code(err) == ("InvalidRequest", 400)
    listed = {o["Key"]: o["Size"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert listed == {"a/b.txt": 5, "lead": 5, "x/": 0, "m/k": 5, "c/opy": 5, "mp/k": 5}
    assert s3_client.head_object(Bucket=s3_bucket, Key="x/")["ETag"] == f'"{hashlib.md5(b"12345").hexdigest()}"'  # a folder now
    # HEAD and GET answer for the written key with the collapsed key's object: only a listing tells them apart.
    assert s3_client.head_object(Bucket=s3_bucket, Key="a//b.txt")["ContentLength"] == 5
    s3_client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"other")
    assert s3_client.get_object(Bucket=s3_bucket, Key="a//b.txt")["Body"].read() == b"other"  # two keys, one object
    with pytest.raises(ClientError) as err:
        s3_client.put_object(Bucket=s3_bucket, Key="/lead", Body=b"z", IfNoneMatch="*")
    assert error_code(err) == ("PreconditionFailed", 412)  # '/lead' collides with 'lead'
    # A listing prefix is split at its last '/': the directory part is normalised, but echoed back when a name part follows.
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="a//b")["Contents"]] == ["a//b.txt"]
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="a//")["Contents"]] == ["a/b.txt"]
    s3_client.delete_object(Bucket=s3_bucket, Key="m//k")
    assert not exists(s3_client, s3_bucket, "m/k")

def test_tagging_delete_objects_and_url_encoded_listing(s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="tagged", Body=b"1", Tagging="source=supabase&bucket=docs")
    tags = s3_client.get_object_tagging(Bucket=s3_bucket, Key="tagged")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("bucket", "docs"), ("source", "supabase")]
    s3_client.put_object(Bucket=s3_bucket, Key="naïve café.txt", Body=b"2")
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="na", EncodingType="url")
    # Encoded as AWS does (form encoding, "+" for a space); botocore leaves it
    # encoded when the caller asked for EncodingType itself.
    assert [o["Key"] for o in listed["Contents"]] == ["na%C3%AFve+caf%C3%A9.txt"]
    assert urllib.parse.unquote_plus(listed["Contents"][0]["Key"]) == "naïve café.txt"
    deleted = s3_client.delete_objects(
        Bucket=s3_bucket, Delete={"Objects": [{"Key": "tagged"}, {"Key": "naïve café.txt"}, {"Key": "never-there"}]}
    )
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["naïve café.txt", "never-there", "tagged"]
    assert s3_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_ranged_reads(s3_client: Any, s3_bucket: str) -> None:
    body = bytes(range(256)) * 40
    s3_client.put_object(Bucket=s3_bucket, Key="r", Body=body)
    part = s3_client.get_object(Bucket=s3_bucket, Key="r", Range="bytes=2-6")
    assert part["Body"].read() == body[2:7]
    assert part["ContentRange"] == f"bytes 2-6/{len(body)}"
    assert s3_client.get_object(Bucket=s3_bucket, Key="r", Range="bytes=-3")["Body"].read() == body[-3:]
    assert s3_client.get_object(Bucket=s3_bucket, Key="r", Range="bytes=10000-")["Body"].read() == body[10000:]
    with pytest.raises(ClientError) as err:
        s3_client.get_object(Bucket=s3_bucket, Key="r", Range=f"bytes={len(body)}-")
    assert error_code(err) == ("InvalidRange", 416)


def test_presigned_get(s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="p.txt", Body=b"presigned")
    url = s3_client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "p.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"presigned"


def test_list_objects_v2_paginates(s3_client: Any, s3_bucket: str) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3_client.put_object(Bucket=s3_bucket, Key=f"many/{i:05d}", Body=b"x"), range(1100)))
    s3_client.put_object(Bucket=s3_bucket, Key="other/x", Body=b"x")
    pages = list(
        s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix="many/", PaginationConfig={"PageSize": 100}
        )
    )
    assert len(pages) == 11
    assert [p["IsTruncated"] for p in pages] == [True] * 10 + [False]
    keys = [o["Key"] for p in pages for o in p["Contents"]]
    assert keys == [f"many/{i:05d}" for i in range(1100)]
    after = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="many/", StartAfter="many/01097")
    assert [o["Key"] for o in after["Contents"]] == ["many/01098", "many/01099"]
    top = s3_client.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["many/", "other/"]
    # Deviation from AWS (which caps MaxKeys at 1000): SeaweedFS honours larger
    # values. Code that assumes "a page is at most 1000 keys" must not rely on it.
    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="many/", MaxKeys=2000)["KeyCount"] == 1100


# --- multipart ---------------------------------------------------------------


def test_multipart_lifecycle(s3_client: Any, s3_bucket: str) -> None:
    first, last = os.urandom(5 * MiB), os.urandom(1234)
    upload = s3_client.create_multipart_upload(
        Bucket=s3_bucket, Key="big.tgz", ContentType="application/gzip", CacheControl="no-cache", Metadata={"v": "1"}
    )
    upload_id = upload["UploadId"]
    part1 = s3_client.upload_part(Bucket=s3_bucket, Key="big.tgz", UploadId=upload_id, PartNumber=1, Body=first)
    part2 = s3_client.upload_part(Bucket=s3_bucket, Key="big.tgz", UploadId=upload_id, PartNumber=2, Body=last)
    uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big.tgz", upload_id)]
    parts = s3_client.list_parts(Bucket=s3_bucket, Key="big.tgz", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (1, 5 * MiB, part1["ETag"]),
        (2, 1234, part2["ETag"]),
    ]
    done = s3_client.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="big.tgz",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part1["ETag"]}, {"PartNumber": 2, "ETag": part2["ETag"]}]},
    )
    # AWS-style multipart ETag: md5 of the parts' md5s, then "-<parts>".
    digests = b"".join(hashlib.md5(p).digest() for p in (first, last))
    assert done["ETag"] == '"%s-2"' % hashlib.md5(digests).hexdigest()
    head = s3_client.head_object(Bucket=s3_bucket, Key="big.tgz")
    assert (head["ContentLength"], head["ContentType"], head["CacheControl"], head["Metadata"]) == (
        5 * MiB + 1234,
        "application/gzip",
        "no-cache",
        {"v": "1"},
    )
    assert s3_client.head_object(Bucket=s3_bucket, Key="big.tgz", PartNumber=1)["ContentLength"] == 5 * MiB
    assert s3_client.get_object(Bucket=s3_bucket, Key="big.tgz", Range=f"bytes={5 * MiB - 2}-{5 * MiB + 1}")[
        "Body"
    ].read() == first[-2:] + last[:2]
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_multipart_abort_and_too_small_parts(s3_client: Any, s3_bucket: str) -> None:
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="gone")["UploadId"]
    s3_client.upload_part(Bucket=s3_bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"abc")
    s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="gone", UploadId=upload_id)
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert not exists(s3_client, s3_bucket, "gone")

    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="small")["UploadId"]
    etags = [
        s3_client.upload_part(Bucket=s3_bucket, Key="small", UploadId=upload_id, PartNumber=n, Body=b"abc")["ETag"]
        for n in (1, 2)
    ]
    with pytest.raises(ClientError) as err:
        s3_client.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="small",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags)]},
        )
    assert error_code(err) == ("EntityTooSmall", 400)
    s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="small", UploadId=upload_id)


def test_s3transfer_upload_fileobj(s3_client: Any, s3_bucket: str) -> None:
    from boto3.s3.transfer import TransferConfig

    body = os.urandom(11 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3_client.upload_fileobj(io.BytesIO(body), s3_bucket, "xfer", Config=config)
    head = s3_client.head_object(Bucket=s3_bucket, Key="xfer", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    assert s3_client.get_object(Bucket=s3_bucket, Key="xfer")["Body"].read() == body


# --- checksums ---------------------------------------------------------------


def test_put_checksums_are_validated_stored_and_returned(s3_client: Any, s3_bucket: str) -> None:
    body = b"hello world" * 1000
    put = s3_client.put_object(Bucket=s3_bucket, Key="sha", Body=body, ChecksumSHA256=sha256_b64(body))
    assert put["ChecksumSHA256"] == sha256_b64(body)
    head = s3_client.head_object(Bucket=s3_bucket, Key="sha", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256_b64(body)
    got = s3_client.get_object(Bucket=s3_bucket, Key="sha", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == sha256_b64(body)

    s3_client.put_object(Bucket=s3_bucket, Key="crc64", Body=body, ChecksumCRC64NVME=crc64nvme(body))
    head = s3_client.head_object(Bucket=s3_bucket, Key="crc64", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == crc64nvme(body)

    s3_client.put_object(Bucket=s3_bucket, Key="sha1", Body=body, ChecksumAlgorithm="SHA1")
    sha1 = base64.b64encode(hashlib.sha1(body).digest()).decode()
    assert s3_client.head_object(Bucket=s3_bucket, Key="sha1", ChecksumMode="ENABLED")["ChecksumSHA1"] == sha1

    # boto3's default (when_supported) adds a CRC32 to every PutObject.
    s3_client.put_object(Bucket=s3_bucket, Key="crc32", Body=body)
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert s3_client.head_object(Bucket=s3_bucket, Key="crc32", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc32

    wrong = {
        "bad-sha": {"ChecksumSHA256": sha256_b64(b"other")},
        "bad-crc64": {"ChecksumCRC64NVME": crc64nvme(b"other")},
        "bad-md5": {"ContentMD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()},
    }
    for key, header in wrong.items():
        with pytest.raises(ClientError) as err:
            s3_client.put_object(Bucket=s3_bucket, Key=key, Body=body, **header)
        assert error_code(err) == ("BadDigest", 400), key
        assert not exists(s3_client, s3_bucket, key), key


def test_multipart_checksums(s3_client: Any, s3_bucket: str) -> None:
    first, last = os.urandom(5 * MiB), os.urandom(777)

    # COMPOSITE SHA-256: each part validated, the object checksum is the hash of hashes, "-N".
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="comp", ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for number, data in ((1, first), (2, last)):
        reply = s3_client.upload_part(
            Bucket=s3_bucket, Key="comp", UploadId=upload_id, PartNumber=number, Body=data, ChecksumSHA256=sha256_b64(data)
        )
        assert reply["ChecksumSHA256"] == sha256_b64(data)
        parts.append({"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": reply["ChecksumSHA256"]})
    with pytest.raises(ClientError) as err:
        s3_client.upload_part(
            Bucket=s3_bucket, Key="comp", UploadId=upload_id, PartNumber=3, Body=b"x", ChecksumSHA256=sha256_b64(b"y")
        )
    assert error_code(err) == ("BadDigest", 400)
    # Not supported: ListParts does not report the parts' checksums.
    listed = s3_client.list_parts(Bucket=s3_bucket, Key="comp", UploadId=upload_id)["Parts"]
    assert [p.get("ChecksumSHA256") for p in listed] == [None, None]
    s3_client.complete_multipart_upload(Bucket=s3_bucket, Key="comp", UploadId=upload_id, MultipartUpload={"Parts": parts})
    composite = hashlib.sha256(hashlib.sha256(first).digest() + hashlib.sha256(last).digest()).digest()
    head = s3_client.head_object(Bucket=s3_bucket, Key="comp", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(composite).decode() + "-2"
    assert head["ChecksumType"] == "COMPOSITE"

    # FULL_OBJECT CRC-64/NVME: CompleteMultipartUpload checks the whole-object value.
    def full_object(key: str, whole: str) -> Any:
        upload_id = s3_client.create_multipart_upload(
            Bucket=s3_bucket, Key=key, ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        parts = []
        for number, data in ((1, first), (2, last)):
            reply = s3_client.upload_part(
                Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, ChecksumCRC64NVME=crc64nvme(data)
            )
            parts.append({"PartNumber": number, "ETag": reply["ETag"], "ChecksumCRC64NVME": reply["ChecksumCRC64NVME"]})
        try:
            return s3_client.complete_multipart_upload(
                Bucket=s3_bucket,
                Key=key,
                UploadId=upload_id,
                ChecksumCRC64NVME=whole,
                ChecksumType="FULL_OBJECT",
                MultipartUpload={"Parts": parts},
            )
        except ClientError:
            s3_client.abort_multipart_upload(Bucket=s3_bucket, Key=key, UploadId=upload_id)
            raise

    full_object("full", crc64nvme(first + last))
    head = s3_client.head_object(Bucket=s3_bucket, Key="full", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (crc64nvme(first + last), "FULL_OBJECT")
    with pytest.raises(ClientError) as err:
        full_object("full-wrong", crc64nvme(first))
    assert error_code(err) == ("BadDigest", 400)
    assert not exists(s3_client, s3_bucket, "full-wrong")


def _put_aws_chunked(server: SeaweedServer, bucket: str, key: str, data: bytes, trailer_crc32: str) -> int:
    """PUT with `aws-chunked` + unsigned payload + a CRC32 trailer, as boto3 does over HTTPS."""
    body = b""
    for start in range(0, len(data), 64 * 1024):
        chunk = data[start : start + 64 * 1024]
        body += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    body += f"0\r\nx-amz-checksum-crc32:{trailer_crc32}\r\n\r\n".encode()
    url = f"{server.endpoint_url}/{bucket}/{key}"
    request = AWSRequest(
        method="PUT",
        url=url,
        data=body,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-trailer": "x-amz-checksum-crc32",
            "x-amz-decoded-content-length": str(len(data)),
            "Content-Length": str(len(body)),
        },
    )
    # Tells the signer the payload is STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(server.access_key, server.secret_key), "s3", server.region).add_auth(request)
    plain = urllib.request.Request(url, data=body, method="PUT", headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(plain, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_aws_chunked_trailer_checksum_is_validated(seaweed: SeaweedServer, s3_client: Any, s3_bucket: str) -> None:
    data = os.urandom(200_000)
    crc32 = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert _put_aws_chunked(seaweed, s3_bucket, "chunked", data, crc32) == 200
    assert s3_client.get_object(Bucket=s3_bucket, Key="chunked")["Body"].read() == data
    assert s3_client.head_object(Bucket=s3_bucket, Key="chunked", ChecksumMode="ENABLED")["ChecksumCRC32"] == crc32
    assert _put_aws_chunked(seaweed, s3_bucket, "chunked-bad", data, "AAAAAA==") == 400
    assert not exists(s3_client, s3_bucket, "chunked-bad")


def test_get_object_attributes_lacks_checksum(s3_client: Any, s3_bucket: str) -> None:
    body = b"attrs" * 100
    s3_client.put_object(Bucket=s3_bucket, Key="a", Body=body, ChecksumSHA256=sha256_b64(body))
    attrs = s3_client.get_object_attributes(
        Bucket=s3_bucket, Key="a", ObjectAttributes=["ETag", "Checksum", "ObjectSize", "StorageClass"]
    )
    assert attrs["ObjectSize"] == len(body)
    assert attrs["ETag"] == hashlib.md5(body).hexdigest()
    assert attrs["StorageClass"] == "STANDARD"
    # Not supported: the stored checksum is missing here (HEAD with ChecksumMode has it).
    assert "Checksum" not in attrs


# --- conditional writes, storage class, encryption, errors -------------------


def test_conditional_writes(s3_client: Any, s3_bucket: str) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3_client.put_object(Bucket=s3_bucket, Key="once", Body=b"2", IfNoneMatch="*")
    assert error_code(err) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as err:
        s3_client.put_object(Bucket=s3_bucket, Key="once", Body=b"3", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_code(err) == ("PreconditionFailed", 412)
    assert s3_client.get_object(Bucket=s3_bucket, Key="once")["Body"].read() == b"1"

    body = os.urandom(5 * MiB)
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="once")["UploadId"]
    etag = s3_client.upload_part(Bucket=s3_bucket, Key="once", UploadId=upload_id, PartNumber=1, Body=body)["ETag"]
    with pytest.raises(ClientError) as err:
        s3_client.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="once",
            UploadId=upload_id,
            IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
    assert error_code(err) == ("PreconditionFailed", 412)
    s3_client.abort_multipart_upload(Bucket=s3_bucket, Key="once", UploadId=upload_id)


def test_storage_class_is_accepted_and_reported(s3_client: Any, s3_bucket: str) -> None:
    for storage_class in ("STANDARD_IA", "GLACIER_IR", "INTELLIGENT_TIERING"):
        s3_client.put_object(Bucket=s3_bucket, Key=storage_class, Body=b"1", StorageClass=storage_class)
        assert s3_client.head_object(Bucket=s3_bucket, Key=storage_class)["StorageClass"] == storage_class
    with pytest.raises(ClientError) as err:
        s3_client.put_object(Bucket=s3_bucket, Key="bogus", Body=b"1", StorageClass="BOGUS")
    assert error_code(err) == ("InvalidStorageClass", 400)


def test_server_side_encryption(s3_client: Any, s3_bucket: str) -> None:
    reply = s3_client.put_object(Bucket=s3_bucket, Key="s3", Body=b"sealed", ServerSideEncryption="AES256")
    assert reply["ServerSideEncryption"] == "AES256"
    assert s3_client.head_object(Bucket=s3_bucket, Key="s3")["ServerSideEncryption"] == "AES256"
    assert s3_client.get_object(Bucket=s3_bucket, Key="s3")["Body"].read() == b"sealed"

    customer_key = os.urandom(32)
    s3_client.put_object(
        Bucket=s3_bucket, Key="c", Body=b"mine", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key
    )
    got = s3_client.get_object(Bucket=s3_bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)
    assert got["Body"].read() == b"mine"

    # Not supported: SSE-KMS (no KMS behind SeaweedFS). Use moto for aws:kms.
    kms = s3_client_without_retries(s3_client)
    with pytest.raises(ClientError) as err:
        kms.put_object(Bucket=s3_bucket, Key="kms", Body=b"1", ServerSideEncryption="aws:kms")
    assert error_code(err) == ("InternalError", 500)


def s3_client_without_retries(client: Any) -> Any:
    """The same endpoint and keys, without botocore's retries (a 500 is retried 4 times otherwise)."""
    credentials = client._request_signer._credentials
    return s3_client(
        endpoint_url=client.meta.endpoint_url,
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        max_attempts=1,
    )


def test_missing_bucket_and_non_empty_bucket_behave_like_aws(s3_client: Any, s3_bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3_client.put_object(Bucket="t-does-not-exist", Key="a", Body=b"1")
    assert error_code(err) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as err:
        s3_client.get_object(Bucket=s3_bucket, Key="missing")
    assert error_code(err) == ("NoSuchKey", 404)
    s3_client.put_object(Bucket=s3_bucket, Key="a", Body=b"1")
    with pytest.raises(ClientError) as err:
        s3_client.delete_bucket(Bucket=s3_bucket)
    assert error_code(err) == ("BucketNotEmpty", 409)
