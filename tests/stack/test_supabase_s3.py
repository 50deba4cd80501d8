"""The bundled server's S3 protocol endpoint (`/storage/v1/s3`) through boto3, path-style, as a real project exposes it.

Each test pins what src/storage/protocols/s3/s3-handler.ts (github.com/supabase/storage)
answers: SigV4 with the project's S3 access keys and region, S3 XML errors,
ListObjectsV2 paging, Range, multipart, user metadata as x-amz-meta-*, and
objects shared with the REST API. The last test migrates through it with
`migrate` (plans/s3-to-s3.yaml's source) to SeaweedFS.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.config import Config
from botocore.exceptions import ClientError

from migrate.cli import main
from migrate.stack.supabase_server import SupabaseServer
from tests.fixtures_supabase import service_headers

MiB = 1024 * 1024


def client_for(server: SupabaseServer, **overrides: Any) -> Any:
    settings = {
        "endpoint_url": server.s3_endpoint,
        "aws_access_key_id": server.s3_access_key_id,
        "aws_secret_access_key": server.s3_secret_access_key,
        "region_name": server.s3_region,
        **overrides,
    }
    config = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, signature_version="s3v4")
    return boto3.client("s3", config=config, **settings)


@pytest.fixture
def s3(supabase_server: SupabaseServer) -> Any:
    return client_for(supabase_server)


def error_of(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]


def rest_put(http: httpx.Client, bucket: str, key: str, body: bytes, **headers: str) -> None:
    response = http.post(f"/object/{bucket}/{urllib.parse.quote(key)}", content=body, headers=headers)
    assert response.status_code == 200, response.text


def test_region_and_keys(supabase_server: SupabaseServer) -> None:
    assert supabase_server.s3_region == "us-east-1"  # hosted Supabase's default (regions.mdx)
    assert len(supabase_server.s3_access_key_id) == 32 and len(supabase_server.s3_secret_access_key) == 64
    assert supabase_server.s3_endpoint == f"{supabase_server.url}/storage/v1/s3"


def test_buckets(s3: Any, supabase_bucket: str) -> None:
    assert supabase_bucket in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    head = s3.head_bucket(Bucket=supabase_bucket)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert error_of(lambda: s3.head_bucket(Bucket="no-such-bucket"))[1] == 404
    assert s3.get_bucket_location(Bucket=supabase_bucket)["LocationConstraint"] == "us-east-1"
    assert s3.get_bucket_versioning(Bucket=supabase_bucket)["Status"] == "Suspended"


def test_put_get_head_and_metadata_both_ways(s3: Any, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    s3.put_object(
        Bucket=supabase_bucket, Key="dir/a b.txt", Body=b"hello s3", ContentType="text/plain",
        CacheControl="max-age=60", Metadata={"Owner": "me"},
    )
    # Written through S3, read through REST: the same row, metadata as user_metadata.
    info = supabase_http.get(f"/object/info/{supabase_bucket}/dir/a b.txt").json()
    assert (info["size"], info["content_type"], info["cache_control"], info["metadata"]) == (8, "text/plain", "max-age=60", {"owner": "me"})
    # Written through REST with JSON user metadata, read through S3 (toAwsMetadataHeaders).
    custom = {"origin": "rest", "n": 2, "city": "Zürich"}
    rest_put(
        supabase_http, supabase_bucket, "rest.bin", b"0123456789",
        **{"Content-Type": "application/x-rest", "x-metadata": base64.b64encode(json.dumps(custom).encode()).decode()},
    )
    got = s3.get_object(Bucket=supabase_bucket, Key="rest.bin")
    assert got["Body"].read() == b"0123456789"
    assert (got["ContentType"], got["ContentLength"], got["Metadata"]) == ("application/x-rest", 10, {"origin": "rest"})
    assert got["ResponseMetadata"]["HTTPHeaders"]["x-amz-missing-meta"] == "2"
    head = s3.head_object(Bucket=supabase_bucket, Key="dir/a b.txt")
    assert (head["ContentLength"], head["CacheControl"], head["Metadata"]) == (8, "max-age=60", {"owner": "me"})
    assert head["ETag"] == supabase_http.head(f"/object/{supabase_bucket}/dir/a b.txt").headers["etag"]


def test_ranges_and_conditionals(s3: Any, supabase_bucket: str) -> None:
    data = bytes(range(256)) * 8
    etag = s3.put_object(Bucket=supabase_bucket, Key="r.bin", Body=data)["ETag"]
    part = s3.get_object(Bucket=supabase_bucket, Key="r.bin", Range="bytes=10-19")
    assert (part["Body"].read(), part["ContentRange"], part["ResponseMetadata"]["HTTPStatusCode"]) == (data[10:20], "bytes 10-19/2048", 206)
    assert s3.get_object(Bucket=supabase_bucket, Key="r.bin", Range="bytes=-5")["Body"].read() == data[-5:]
    assert error_of(lambda: s3.get_object(Bucket=supabase_bucket, Key="r.bin", Range="bytes=4096-")) == ("InvalidRange", 416)
    assert error_of(lambda: s3.get_object(Bucket=supabase_bucket, Key="r.bin", IfNoneMatch=etag))[1] == 304
    assert error_of(lambda: s3.get_object(Bucket=supabase_bucket, Key="r.bin", IfMatch='"nope"')) == ("PreconditionFailed", 412)
    overridden = s3.get_object(Bucket=supabase_bucket, Key="r.bin", ResponseContentType="x/y", ResponseContentDisposition="attachment")
    assert (overridden["ContentType"], overridden["ContentDisposition"]) == ("x/y", "attachment")


def test_errors_are_s3_xml(supabase_server: SupabaseServer, s3: Any, supabase_bucket: str) -> None:
    assert error_of(lambda: s3.get_object(Bucket=supabase_bucket, Key="missing.txt")) == ("NoSuchKey", 404)
    assert error_of(lambda: s3.get_object(Bucket="no-such-bucket", Key="k")) == ("NoSuchBucket", 404)
    assert error_of(lambda: s3.put_object(Bucket=supabase_bucket, Key="ü.txt", Body=b"x")) == ("InvalidKey", 400)
    raw = httpx.get(f"{supabase_server.s3_endpoint}/{supabase_bucket}/missing.txt")
    assert raw.status_code == 403 and raw.headers["content-type"] == "application/xml"
    assert raw.text == (
        '<?xml version="1.0" encoding="UTF-8"?><Error><Resource>' + supabase_bucket + "/missing.txt</Resource>"
        "<Code>AccessDenied</Code><Message>Missing authorization header</Message></Error>"
    )


def test_sigv4_is_enforced(supabase_server: SupabaseServer, supabase_bucket: str) -> None:
    wrong_secret = client_for(supabase_server, aws_secret_access_key="0" * 64)
    assert error_of(wrong_secret.list_buckets) == ("SignatureDoesNotMatch", 403)
    wrong_key = client_for(supabase_server, aws_access_key_id="0" * 32)
    assert error_of(wrong_key.list_buckets) == ("InvalidAccessKeyId", 403)
    # The server signs with the project's region (enforceRegion): another region does not verify.
    wrong_region = client_for(supabase_server, region_name="eu-central-1")
    assert error_of(wrong_region.list_buckets) == ("SignatureDoesNotMatch", 403)
    # The REST keys are not S3 credentials.
    assert httpx.get(supabase_server.s3_endpoint, headers=service_headers(supabase_server)).status_code == 400


def test_presigned_get(supabase_server: SupabaseServer, s3: Any, supabase_bucket: str) -> None:
    s3.put_object(Bucket=supabase_bucket, Key="p/q.txt", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": supabase_bucket, "Key": "p/q.txt"}, ExpiresIn=60)
    assert httpx.get(url).content == b"presigned"
    tampered = url.replace("p/q.txt", "p/other.txt")
    assert httpx.get(tampered).status_code == 403
    # Only Signature Version 4 (compatibility.md): a SigV2 presigned URL is refused.
    v2 = boto3.client(
        "s3", endpoint_url=supabase_server.s3_endpoint, aws_access_key_id=supabase_server.s3_access_key_id,
        aws_secret_access_key=supabase_server.s3_secret_access_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3"),
    )
    assert httpx.get(v2.generate_presigned_url("get_object", Params={"Bucket": supabase_bucket, "Key": "p/q.txt"})).status_code == 403


class StreamingSigV4Auth(S3SigV4Auth):
    """botocore's S3 signer, keeping the X-Amz-Content-SHA256 the request already has
    (S3SigV4Auth replaces it with the body's hash): how SDKs sign streaming uploads."""

    def _modify_request_before_signing(self, request: Any) -> None:
        SigV4Auth._modify_request_before_signing(self, request)


def test_aws_chunked_upload(supabase_server: SupabaseServer, s3: Any, supabase_bucket: str) -> None:
    """A streaming (aws-chunked) PutObject with a trailing checksum, signed by botocore's own SigV4 signer.

    boto3 signs the payload itself over plain HTTP, so this framing (what SDKs send
    over HTTPS, sigv4-streaming-trailers) is built by hand.
    """
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    payload = secrets.token_bytes(70_000)
    body = b"".join(
        f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in (payload[:65536], payload[65536:])
    ) + b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    url = f"{supabase_server.s3_endpoint}/{supabase_bucket}/chunked/a.bin"
    headers = {
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(payload)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Content-Type": "application/x-chunked",
    }
    request = AWSRequest(method="PUT", url=url, data=body, headers=headers)
    credentials = Credentials(supabase_server.s3_access_key_id, supabase_server.s3_secret_access_key)
    StreamingSigV4Auth(credentials, "s3", supabase_server.s3_region).add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    response = httpx.put(url, content=body, headers=dict(request.headers.items()))
    assert response.status_code == 200, response.text
    got = s3.get_object(Bucket=supabase_bucket, Key="chunked/a.bin")
    assert (got["Body"].read(), got["ContentType"]) == (payload, "application/x-chunked")


def _signed_chunked_put(server: SupabaseServer, url: str, pieces: list[bytes], *, tamper: bool = False) -> httpx.Response:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD PutObject: the seed signature from botocore's signer,
    the chunk signatures chained on it as AWS sigv4-streaming describes."""
    import hashlib
    import hmac

    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def frame(signatures: list[str], chunks: list[bytes]) -> bytes:
        return b"".join(
            f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
            for chunk, signature in zip(chunks, signatures)
        )

    chunks = [*pieces, b""]
    headers = {
        "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(sum(map(len, pieces))),
    }
    placeholder = frame(["0" * 64] * len(chunks), chunks)  # same length as the real body
    request = AWSRequest(method="PUT", url=url, data=placeholder, headers=headers)
    StreamingSigV4Auth(Credentials(server.s3_access_key_id, server.s3_secret_access_key), "s3", server.s3_region).add_auth(request)
    long_date = request.headers["X-Amz-Date"]
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    key = f"AWS4{server.s3_secret_access_key}".encode()
    for part in (long_date[:8], server.s3_region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    scope = f"{long_date[:8]}/{server.s3_region}/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    signatures = []
    for chunk in chunks:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", long_date, scope, previous, empty, hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signatures.append(previous)
    if tamper:
        chunks[1] = bytes([chunks[1][0] ^ 1]) + chunks[1][1:]
    return httpx.put(url, content=frame(signatures, chunks), headers=dict(request.headers.items()))


def test_aws_chunked_upload_with_chunk_signatures(supabase_server: SupabaseServer, s3: Any, supabase_bucket: str) -> None:
    pieces = [secrets.token_bytes(65536), secrets.token_bytes(65536), secrets.token_bytes(123)]
    url = f"{supabase_server.s3_endpoint}/{supabase_bucket}/chunked/signed.bin"
    response = _signed_chunked_put(supabase_server, url, pieces)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=supabase_bucket, Key="chunked/signed.bin")["Body"].read() == b"".join(pieces)
    # A chunk changed in flight: refused at that chunk, and nothing is stored.
    tampered_url = f"{supabase_server.s3_endpoint}/{supabase_bucket}/chunked/tampered.bin"
    tampered = _signed_chunked_put(supabase_server, tampered_url, pieces, tamper=True)
    assert tampered.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    assert error_of(lambda: s3.head_object(Bucket=supabase_bucket, Key="chunked/tampered.bin"))[1] == 404


def test_injected_faults_answer_in_s3_xml(s3: Any, supabase_bucket: str, supabase_faults: Callable[..., Any]) -> None:
    s3.put_object(Bucket=supabase_bucket, Key="f.txt", Body=b"fault")
    supabase_faults({"method": "GET", "path": f"/s3/{supabase_bucket}/f.txt", "action": "status", "status": 503, "retry_after": 2})
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=supabase_bucket, Key="f.txt")
    response = caught.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (503, "DatabaseConnectionLimit")
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    assert s3.get_object(Bucket=supabase_bucket, Key="f.txt")["Body"].read() == b"fault"  # the rule fired once


KEYS = sorted(
    ["a.txt", "B.txt", "b/1.txt", "b/2.txt", "b/c/3.txt", "b/c/4.txt", "c d/5.txt", "d/6.txt", "d/7.txt", "e.txt", "f+g=h.txt"]
)


@pytest.fixture
def listing_bucket(s3: Any, supabase_bucket: str) -> str:
    for key in KEYS:
        s3.put_object(Bucket=supabase_bucket, Key=key, Body=key.encode())
    return supabase_bucket


def expected_page(prefix: str, delimiter: str) -> list[str]:
    """Keys and common prefixes in byte order, as S3 lists them."""
    entries: list[str] = []
    for key in sorted(key for key in KEYS if key.startswith(prefix)):
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key[: cut + len(delimiter)] if cut >= 0 else key
        if not entries or entries[-1] != entry:
            entries.append(entry)
    return entries


@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("", "/"), ("b/", "/"), ("b", ""), ("d/", "/"), ("zzz", "/")])
@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_list_objects_v2_pages(s3: Any, listing_bucket: str, prefix: str, delimiter: str, page_size: int) -> None:
    seen: list[str] = []
    pages = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=listing_bucket, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": page_size}
    ):
        pages += 1
        entries = [item["Key"] for item in page.get("Contents", [])] + [item["Prefix"] for item in page.get("CommonPrefixes", [])]
        assert page["KeyCount"] == len(entries) <= page_size
        seen.extend(entries)
    assert sorted(seen) == expected_page(prefix, delimiter)
    assert pages == max(1, -(-len(seen) // page_size))


def test_list_objects_v2_start_after_and_fields(s3: Any, listing_bucket: str) -> None:
    listed = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="b/2.txt")
    assert [item["Key"] for item in listed["Contents"]] == [key for key in KEYS if key > "b/2.txt"]
    first = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=1)["Contents"][0]
    assert (first["Key"], first["Size"], first["StorageClass"]) == ("B.txt", 5, "STANDARD")
    assert first["ETag"].startswith('"') and first["LastModified"].year >= 2026
    assert s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0)["KeyCount"] == 0
    assert error_of(lambda: s3.list_objects_v2(Bucket=listing_bucket, ContinuationToken="!!")) == ("InvalidArgument", 400)
    assert error_of(lambda: s3.list_objects_v2(Bucket="no-such-bucket")) == ("NoSuchBucket", 404)


@pytest.mark.parametrize(("prefix", "delimiter"), [("", ""), ("", "/"), ("b/", "/")])
def test_list_objects_v1_pages(s3: Any, listing_bucket: str, prefix: str, delimiter: str) -> None:
    """ListObjects (v1, what rclone uses for provider Other): Marker / NextMarker paging."""
    seen: list[str] = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=listing_bucket, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": 2}
    ):
        seen.extend([item["Key"] for item in page.get("Contents", [])] + [item["Prefix"] for item in page.get("CommonPrefixes", [])])
    assert sorted(seen) == expected_page(prefix, delimiter)


def test_create_and_delete_bucket(s3: Any, supabase_http: httpx.Client) -> None:
    name = f"s3-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    try:
        assert supabase_http.get(f"/bucket/{name}").json()["public"] is False
        assert error_of(lambda: s3.create_bucket(Bucket=name)) == ("BucketAlreadyExists", 409)
        s3.put_object(Bucket=name, Key="x", Body=b"x")
        assert error_of(lambda: s3.delete_bucket(Bucket=name)) == ("BucketNotEmpty", 409)
        s3.delete_object(Bucket=name, Key="x")
        s3.delete_bucket(Bucket=name)
        assert error_of(lambda: s3.head_bucket(Bucket=name))[1] == 404
    finally:
        supabase_http.post(f"/bucket/{name}/empty", json={})
        supabase_http.request("DELETE", f"/bucket/{name}", json={})


def test_multipart_upload_and_abort(s3: Any, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    data = secrets.token_bytes(11 * MiB + 3)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(data), supabase_bucket, "big/file.bin", Config=config, ExtraArgs={"Metadata": {"k": "v"}})
    head = s3.head_object(Bucket=supabase_bucket, Key="big/file.bin")
    assert (head["ContentLength"], head["ETag"].endswith('-3"'), head["Metadata"]) == (len(data), True, {"k": "v"})
    out = io.BytesIO()
    s3.download_fileobj(supabase_bucket, "big/file.bin", out)
    assert out.getvalue() == data
    assert supabase_http.get(f"/object/{supabase_bucket}/big/file.bin").content == data

    upload = s3.create_multipart_upload(Bucket=supabase_bucket, Key="aborted.bin")["UploadId"]
    s3.upload_part(Bucket=supabase_bucket, Key="aborted.bin", UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    assert [part["PartNumber"] for part in s3.list_parts(Bucket=supabase_bucket, Key="aborted.bin", UploadId=upload)["Parts"]] == [1]
    in_progress = s3.list_multipart_uploads(Bucket=supabase_bucket)["Uploads"]
    assert [(item["Key"], item["UploadId"]) for item in in_progress] == [("aborted.bin", upload)]
    # An upload id only works for its own object.
    assert error_of(lambda: s3.list_parts(Bucket=supabase_bucket, Key="other.bin", UploadId=upload)) == ("NoSuchUpload", 404)
    s3.abort_multipart_upload(Bucket=supabase_bucket, Key="aborted.bin", UploadId=upload)
    assert error_of(lambda: s3.list_parts(Bucket=supabase_bucket, Key="aborted.bin", UploadId=upload)) == ("NoSuchUpload", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=supabase_bucket)
    assert error_of(lambda: s3.head_object(Bucket=supabase_bucket, Key="aborted.bin"))[1] == 404

    bad = s3.create_multipart_upload(Bucket=supabase_bucket, Key="bad.bin")["UploadId"]
    etag = s3.upload_part(Bucket=supabase_bucket, Key="bad.bin", UploadId=bad, PartNumber=1, Body=b"y")["ETag"]
    wrong = {"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]}
    assert error_of(lambda: s3.complete_multipart_upload(Bucket=supabase_bucket, Key="bad.bin", UploadId=bad, MultipartUpload=wrong)) == ("InvalidPart", 400)
    done = s3.complete_multipart_upload(
        Bucket=supabase_bucket, Key="bad.bin", UploadId=bad, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert done["Key"] == "bad.bin" and s3.get_object(Bucket=supabase_bucket, Key="bad.bin")["Body"].read() == b"y"


def test_copy_and_delete(s3: Any, supabase_bucket: str) -> None:
    s3.put_object(Bucket=supabase_bucket, Key="src.txt", Body=b"copy me", Metadata={"a": "1"})
    s3.copy_object(Bucket=supabase_bucket, Key="dst.txt", CopySource={"Bucket": supabase_bucket, "Key": "src.txt"})
    copied = s3.get_object(Bucket=supabase_bucket, Key="dst.txt")
    assert (copied["Body"].read(), copied["Metadata"]) == (b"copy me", {"a": "1"})
    s3.delete_object(Bucket=supabase_bucket, Key="src.txt")
    s3.delete_object(Bucket=supabase_bucket, Key="never-there.txt")  # 204 either way, as S3
    deleted = s3.delete_objects(Bucket=supabase_bucket, Delete={"Objects": [{"Key": "dst.txt"}, {"Key": "gone.txt"}]})
    assert sorted(item["Key"] for item in deleted["Deleted"]) == ["dst.txt", "gone.txt"]
    assert s3.list_objects_v2(Bucket=supabase_bucket)["KeyCount"] == 0


def test_migrate_from_the_s3_endpoint_to_seaweedfs(
    supabase_server: SupabaseServer, s3: Any, seaweed: Any, supabase_bucket: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    objects = {f"docs/{index:02d}.txt": secrets.token_bytes(100 + index) for index in range(12)}
    objects["big/part.bin"] = secrets.token_bytes(6 * MiB + 1)
    for key, body in objects.items():
        s3.put_object(Bucket=supabase_bucket, Key=key, Body=body, Metadata={"origin": "s3"}, ContentType="application/x-test")
    destination = f"s3src-{uuid.uuid4().hex[:8]}"
    target = seaweed.client()
    target.create_bucket(Bucket=destination)
    for name, value in {
        "SUPABASE_S3_ENDPOINT": supabase_server.s3_endpoint,
        "SUPABASE_S3_REGION": supabase_server.s3_region,
        "SUPABASE_S3_ACCESS_KEY_ID": supabase_server.s3_access_key_id,
        "SUPABASE_S3_SECRET_ACCESS_KEY": supabase_server.s3_secret_access_key,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    plan = tmp_path / "from-s3.yaml"
    plan.write_text(
        f"""version: 1
name: from-s3-{destination}
source:
  type: s3
  endpoint_url: ${{SUPABASE_S3_ENDPOINT}}
  region: ${{SUPABASE_S3_REGION}}
  access_key_id_env: SUPABASE_S3_ACCESS_KEY_ID
  secret_access_key_env: SUPABASE_S3_SECRET_ACCESS_KEY
  buckets: [{supabase_bucket}]
destination:
  bucket: {destination}
  endpoint_url: {seaweed.endpoint_url}
  region: us-east-1
unmatched: keep
transfer: {{concurrency: 4, part_size: 5MiB, multipart_threshold: 5MiB}}
"""
    )

    def migrate(*args: str) -> int:
        extra = ["--no-progress"] if args[0] in ("run", "verify") else []
        return main([*args, str(plan), "--state-dir", str(tmp_path / "state"), "--reports-dir", str(tmp_path / "reports"), *extra])

    assert migrate("plan") == 0
    assert migrate("run") == 0
    code = migrate("verify", "--mode", "deep")
    assert code == 0, capsys.readouterr().out
    listed = {item["Key"] for page in target.get_paginator("list_objects_v2").paginate(Bucket=destination) for item in page.get("Contents", [])}
    assert len(listed) == len(objects)
    for key, body in objects.items():
        [dest_key] = [name for name in listed if name.endswith(key)]
        got = target.get_object(Bucket=destination, Key=dest_key)
        assert got["Body"].read() == body and got["Metadata"] == {"origin": "s3"}, key


def test_the_s3_protocol_reads_a_dot_segment_key_as_itself(supabase_server: SupabaseServer, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    """What an S3-protocol source does with `c/./d.txt` (the REST source plans it unreadable-key): boto3 and the
    lean data path send the path as written, and S3's SigV4 signs it so (no dot-segment removal for S3), so the
    key reads its own bytes, not those of `c/d.txt`."""
    from migrate.stores.s3 import S3Location, S3Store

    rest_put(supabase_http, supabase_bucket, "c/d.txt", b"the neighbour")
    response = supabase_http.post(f"/object/{supabase_bucket}/c/%2E/d.txt", content=b"the dot segment key")  # find-my-way decodes %2E
    assert response.json()["Key"] == f"{supabase_bucket}/c/./d.txt", response.text
    location = S3Location(
        endpoint_url=supabase_server.s3_endpoint,
        region=supabase_server.s3_region,
        access_key_id=supabase_server.s3_access_key_id,
        secret_access_key=supabase_server.s3_secret_access_key,
    )
    for fast_data_path in (True, False):
        store = S3Store(location, fast_data_path=fast_data_path)
        try:
            assert sorted(info.key for page in store.iter_objects(supabase_bucket) for info in page) == ["c/./d.txt", "c/d.txt"]
            for key, body in (("c/./d.txt", b"the dot segment key"), ("c/d.txt", b"the neighbour")):
                assert b"".join(store.read(supabase_bucket, key)) == body, (fast_data_path, key)
                info = store.head(supabase_bucket, key)
                assert info is not None and info.size == len(body)
        finally:
            store.close()
