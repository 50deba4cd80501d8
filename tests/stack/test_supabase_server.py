"""Conformance of the bundled Supabase Storage server with the real one.

Through the official client (supabase / storage3) and raw HTTP (httpx), each
test pins a behaviour of github.com/supabase/storage that migrate relies on:
routes, bodies, headers, error shapes, listing order and paging, auth, the
catalog rows in PostgreSQL, and the fault switchboard the transfer tests use.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import importlib.util
import io
import secrets
import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import jwt
import psycopg
import pytest
from storage3.exceptions import StorageApiError
from supabase import Client, create_client

from migrate.stack.supabase_server import SupabaseServer, ensure_schema, launch, make_jwt
from migrate.stack.supabase_server.listing import decode_cursor
from tests.fixtures_supabase import service_headers

NOT_FOUND = {"statusCode": "404", "code": "NoSuchKey", "error": "not_found", "message": "Object not found"}
NO_BUCKET = {"statusCode": "404", "code": "NoSuchBucket", "error": "Bucket not found", "message": "Bucket not found"}
RLS_DENIED = {
    "statusCode": "403",
    "code": "AccessDenied",
    "error": "Unauthorized",
    "message": "new row violates row-level security policy",
}
V1_ROW_KEYS = {"name", "id", "updated_at", "created_at", "last_accessed_at", "metadata"}
METADATA_KEYS = {"eTag", "size", "mimetype", "cacheControl", "lastModified", "contentLength", "httpStatusCode"}


def quote_key(key: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in key.split("/"))


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


@pytest.fixture
def sb(supabase_server: SupabaseServer) -> Client:
    """The official client with the service key."""
    return create_client(supabase_server.url, supabase_server.service_key)


@pytest.fixture
def sb_anon(supabase_server: SupabaseServer) -> Client:
    return create_client(supabase_server.url, supabase_server.anon_key)


@pytest.fixture
def anon_http(supabase_server: SupabaseServer) -> Iterator[httpx.Client]:
    key = supabase_server.anon_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=supabase_server.storage_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def bare_http(supabase_server: SupabaseServer) -> Iterator[httpx.Client]:
    """No key at all."""
    with httpx.Client(base_url=supabase_server.storage_url, timeout=30) as client:
        yield client


def put(http: httpx.Client, bucket: str, key: str, data: bytes, **headers: str) -> httpx.Response:
    response = http.post(f"/object/{bucket}/{quote_key(key)}", content=data, headers=headers)
    assert response.status_code == 200, response.text
    return response


def db_rows(server: SupabaseServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.database_url) as conn:
        return conn.execute(sql, params).fetchall()


# -- process and schema ---------------------------------------------------------------------


def test_launch_contract(supabase_server: SupabaseServer) -> None:
    assert supabase_server.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{supabase_server.storage_url}/status").status_code == 200
    for key, role in ((supabase_server.service_key, "service_role"), (supabase_server.anon_key, "anon")):
        claims = jwt.decode(key, supabase_server.jwt_secret, algorithms=["HS256"])
        assert claims["role"] == role
    # The secret travels in the environment, never in argv (visible in `ps`).
    cmdline = Path(f"/proc/{supabase_server.process.pid}/cmdline").read_bytes()
    assert supabase_server.jwt_secret.encode() not in cmdline
    assert b"migrate.stack.supabase_server" in cmdline


# ../shared beside the checkout (CI lays it there): the upstream server's recorded answers.
UPSTREAM_RECORDING = Path(__file__).resolve().parents[2].parent / "shared" / "supabase-upstream"


def test_answers_like_the_recorded_upstream_server(make_database: Callable[[str], str], tmp_path: Path) -> None:
    """The shared diff tool's scenario against a fresh bundled server: no difference from the recording."""
    tool_path = UPSTREAM_RECORDING / "supabase_diff.py"
    assert tool_path.is_file(), f"{UPSTREAM_RECORDING} is missing: the recording lives in ../shared beside the checkout"
    spec = importlib.util.spec_from_file_location("supabase_diff", tool_path)
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    server = launch(database_url=make_database("diff"), data_dir=tmp_path / "data", jwt_secret=secrets.token_urlsafe(32))
    try:
        # The recorded server already had one private bucket, `rig-test`: its
        # `bucket.list` step shows it first (buckets are listed oldest first).
        created = httpx.post(f"{server.storage_url}/bucket", json={"name": "rig-test", "public": False}, headers=service_headers(server))
        assert created.status_code == 200, created.text
        ours = tmp_path / "ours.json"
        ours.write_text(json.dumps(tool.probe(server.url, server.service_key, server.anon_key)))
    finally:
        server.stop()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        differences = tool.compare(str(UPSTREAM_RECORDING / "upstream-probe.json"), str(ours))
    assert differences == 0, printed.getvalue()
    assert printed.getvalue().startswith("0 differences over ")


def test_schema_is_the_real_one_and_idempotent(supabase_server: SupabaseServer) -> None:
    ensure_schema(supabase_server.database_url)  # a second run changes nothing and does not fail
    columns = {
        (table, column): data_type
        for table, column, data_type in db_rows(
            supabase_server,
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'storage'",
        )
    }
    bucket_columns = {column for table, column in columns if table == "buckets"}
    object_columns = {column for table, column in columns if table == "objects"}
    assert bucket_columns == {
        "id", "name", "owner", "owner_id", "created_at", "updated_at", "public",
        "avif_autodetection", "file_size_limit", "allowed_mime_types", "type",
    }
    assert object_columns == {
        "id", "bucket_id", "name", "owner", "owner_id", "created_at", "updated_at",
        "last_accessed_at", "metadata", "user_metadata", "version", "path_tokens",
    }
    assert columns[("objects", "id")] == "uuid"
    assert columns[("objects", "metadata")] == "jsonb"
    assert columns[("objects", "path_tokens")] == "ARRAY"
    assert columns[("buckets", "file_size_limit")] == "bigint"
    indexes = dict(db_rows(supabase_server, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'storage'"))
    assert "UNIQUE" in indexes["bucketid_objname"] and "(bucket_id, name)" in indexes["bucketid_objname"]
    assert "UNIQUE" in indexes["bname"]
    assert 'name COLLATE "C"' in indexes["idx_objects_bucket_id_name"]
    assert 'lower(name) COLLATE "C"' in indexes["idx_objects_bucket_id_name_lower"]
    assert "text_pattern_ops" in indexes["name_prefix_search"]


def test_catalog_rows_after_upload(supabase_server: SupabaseServer, sb: Client, supabase_bucket: str) -> None:
    data = b"catalog row check"
    sb.storage.from_(supabase_bucket).upload(
        "deep/er/file.bin", data, {"content-type": "application/x-test", "cache-control": "60", "metadata": {"team": "a"}}
    )
    [(metadata, path_tokens, user_metadata, version, owner_id)] = db_rows(
        supabase_server,
        "SELECT metadata, path_tokens, user_metadata, version, owner_id FROM storage.objects"
        " WHERE bucket_id = %s AND name = %s",
        supabase_bucket,
        "deep/er/file.bin",
    )
    assert set(metadata) == METADATA_KEYS
    assert metadata["eTag"] == md5_etag(data)
    assert metadata["size"] == metadata["contentLength"] == len(data)
    assert metadata["mimetype"] == "application/x-test"
    assert metadata["cacheControl"] == "max-age=60"
    assert metadata["httpStatusCode"] == 200
    assert metadata["lastModified"].endswith("Z") and len(metadata["lastModified"]) == 24
    assert path_tokens == ["deep", "er", "file.bin"]
    assert user_metadata == {"team": "a"}
    assert version and owner_id is None


# -- buckets ----------------------------------------------------------------------------------


def test_create_and_read_bucket(sb: Client, supabase_http: httpx.Client, make_supabase_bucket: Callable[..., str]) -> None:
    name = make_supabase_bucket(public=True, file_size_limit=1000, allowed_mime_types=["image/png"])
    bucket = sb.storage.get_bucket(name)
    assert (bucket.id, bucket.name, bucket.public) == (name, name, True)
    assert bucket.file_size_limit == 1000 and bucket.allowed_mime_types == ["image/png"]
    assert name in {b.id for b in sb.storage.list_buckets()}
    raw = supabase_http.get(f"/bucket/{name}").json()
    assert set(raw) == {"id", "name", "owner", "public", "file_size_limit", "allowed_mime_types", "created_at", "updated_at"}
    assert raw["owner"] == ""  # bucketSchema types owner as a string


def test_bucket_errors(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    duplicate = supabase_http.post("/bucket", json={"id": supabase_bucket, "name": supabase_bucket})
    assert duplicate.status_code == 400
    assert duplicate.json() == {
        "statusCode": "409", "code": "BucketAlreadyExists", "error": "Duplicate", "message": "The resource already exists"
    }
    missing = supabase_http.get("/bucket/no-such-bucket")
    assert (missing.status_code, missing.json()) == (400, NO_BUCKET)
    invalid = supabase_http.post("/bucket", json={"name": "bad/name"})
    assert invalid.json() == {
        "statusCode": "400", "code": "InvalidBucketName", "error": "Invalid Input", "message": "Bucket name invalid"
    }


def test_update_empty_and_delete_bucket(sb: Client, supabase_http: httpx.Client) -> None:
    name = "b-lifecycle-" + str(int(time.time() * 1000))
    sb.storage.create_bucket(name)
    assert sb.storage.update_bucket(name, {"public": True, "file_size_limit": 5}) == {"message": "Successfully updated"}
    assert sb.storage.get_bucket(name).public is True
    put(supabase_http, name, "x", b"12345")
    not_empty = supabase_http.request("DELETE", f"/bucket/{name}", json={})
    assert not_empty.json() == {
        "statusCode": "409", "code": "ResourceNotEmpty", "error": "ResourceNotEmpty",
        "message": "The bucket you tried to delete is not empty",
    }
    assert sb.storage.empty_bucket(name) == {"message": "Successfully emptied"}
    assert sb.storage.delete_bucket(name) == {"message": "Successfully deleted"}
    assert supabase_http.get(f"/bucket/{name}").json() == NO_BUCKET


def test_file_size_limit_is_enforced(
    sb: Client, supabase_http: httpx.Client, make_supabase_bucket: Callable[..., str]
) -> None:
    name = make_supabase_bucket(file_size_limit=100)
    too_large = {
        "statusCode": "413", "code": "EntityTooLarge", "error": "Payload too large",
        "message": "The object exceeded the maximum allowed size",
    }
    response = supabase_http.post(f"/object/{name}/big", content=b"x" * 101)
    assert (response.status_code, response.json()) == (400, too_large)
    chunked = supabase_http.post(f"/object/{name}/big", content=iter([b"x" * 60, b"x" * 60]))
    assert chunked.json() == too_large
    with pytest.raises(StorageApiError) as caught:
        sb.storage.from_(name).upload("big", b"x" * 101)
    assert (caught.value.code, caught.value.status) == ("Payload too large", "413")
    put(supabase_http, name, "fits", b"x" * 100)
    assert supabase_http.get("/status").status_code == 200  # the connection survived the refusals
    assert list_names(supabase_http, name) == ["fits"]


def list_names(http: httpx.Client, bucket: str) -> list[str]:
    return [row["name"] for row in http.post(f"/object/list/{bucket}", json={"prefix": ""}).json()]


def test_allowed_mime_types_are_enforced(supabase_http: httpx.Client, make_supabase_bucket: Callable[..., str]) -> None:
    name = make_supabase_bucket(allowed_mime_types=["image/png", "video/*"])
    put(supabase_http, name, "a.png", b"png", **{"Content-Type": "image/png"})
    put(supabase_http, name, "a.mp4", b"mp4", **{"Content-Type": "video/mp4"})
    refused = supabase_http.post(f"/object/{name}/a.txt", content=b"txt", headers={"Content-Type": "text/plain"})
    assert refused.json() == {
        "statusCode": "415", "code": "InvalidMimeType", "error": "invalid_mime_type",
        "message": "mime type text/plain is not supported",
    }


# -- uploads and metadata ----------------------------------------------------------------------


def test_upload_metadata_round_trip(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    data = b"\x89PNG fake image bytes"
    bucket = sb.storage.from_(supabase_bucket)
    uploaded = bucket.upload("img/logo.png", data, {"content-type": "image/png", "cache-control": "120", "metadata": {"alt": "logo"}})
    assert uploaded.full_path == f"{supabase_bucket}/img/logo.png"
    info = bucket.info("img/logo.png")
    assert set(info) == {
        "id", "name", "version", "bucket_id", "size", "content_type", "cache_control", "etag", "metadata",
        "last_modified", "created_at",
    }
    assert (info["name"], info["bucket_id"]) == ("img/logo.png", supabase_bucket)
    assert info["last_modified"].endswith("Z")
    assert (info["size"], info["content_type"], info["cache_control"]) == (len(data), "image/png", "max-age=120")
    assert info["etag"] == md5_etag(data) and info["metadata"] == {"alt": "logo"}
    head = supabase_http.head(f"/object/{supabase_bucket}/img/logo.png")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "image/png"
    assert head.headers["cache-control"] == "max-age=120"
    assert head.headers["etag"] == md5_etag(data)
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["last-modified"].endswith("GMT")
    [row] = bucket.list("img")
    assert row["metadata"]["mimetype"] == "image/png" and row["metadata"]["size"] == len(data)


def test_raw_upload_headers_and_x_metadata(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    user_metadata = {"origin": "raw", "n": 2}
    put(
        supabase_http, supabase_bucket, "raw.json", b'{"a": 1}',
        **{
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            "x-metadata": base64.b64encode(json.dumps(user_metadata).encode()).decode(),
        },
    )
    info = supabase_http.get(f"/object/info/{supabase_bucket}/raw.json").json()
    assert (info["content_type"], info["cache_control"], info["metadata"]) == ("application/json", "no-store", user_metadata)
    response = supabase_http.get(f"/object/{supabase_bucket}/raw.json")
    assert response.content == b'{"a": 1}' and response.headers["cache-control"] == "no-store"


def test_upsert_and_update(
    supabase_server: SupabaseServer, sb: Client, supabase_http: httpx.Client, supabase_bucket: str
) -> None:
    bucket = sb.storage.from_(supabase_bucket)
    bucket.upload("doc.txt", b"one")
    duplicate = supabase_http.post(f"/object/{supabase_bucket}/doc.txt", content=b"two")
    assert duplicate.json() == {
        "statusCode": "409", "code": "KeyAlreadyExists", "error": "Duplicate", "message": "The resource already exists"
    }
    bucket.upload("doc.txt", b"two", {"upsert": "true"})
    assert bucket.download("doc.txt") == b"two"
    bucket.update("doc.txt", b"three")
    assert bucket.download("doc.txt") == b"three"
    bucket.update("new-by-put.txt", b"put creates")  # updateObject.ts upserts
    assert bucket.download("new-by-put.txt") == b"put creates"
    versions = db_rows(
        supabase_server, "SELECT count(*) FROM storage.objects WHERE bucket_id = %s AND name = 'doc.txt'", supabase_bucket
    )
    assert versions == [(1,)]


def test_invalid_keys_are_rejected(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    # limits.ts isValidKey: S3-safe ASCII only (JavaScript's \w); upstream answers
    # "ü.txt" with InvalidKey (../shared/supabase-upstream, step upload.badkey).
    for key in (
        "bell\x07.txt", "escape\x1b[0m", "nonchar\ufffe", "ünïcode/naïve café.txt", "folder/일이삼/🙂/a b.txt",
        "tab\tand\nnewline.txt", "100%.txt", "hash#.txt", "tilde~.txt", "back\\slash", "curly{}.txt", "a<b>.txt",
    ):
        response = supabase_http.post(f"/object/{supabase_bucket}/{quote_key(key)}", content=b"x")
        assert response.json() == {"statusCode": "400", "code": "InvalidKey", "error": "InvalidKey", "message": f"Invalid key: {key}"}, key


def test_keys_with_spaces_and_special_characters(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    keys = [
        "dir with space/file (1)!.txt",
        "odd/a+b=c&d;e,f$g@h'i*j:k.txt",
        "q?mark.txt",
        "dots.../x-y_z.txt",
        "every/!-.*'() &$@=;:+,?_09AZaz.txt",
    ]
    bucket = sb.storage.from_(supabase_bucket)
    for index, key in enumerate(keys):
        bucket.upload(key, f"content {index}".encode())
    for index, key in enumerate(keys):
        assert bucket.download(key) == f"content {index}".encode()
        assert supabase_http.get(f"/object/authenticated/{supabase_bucket}/{quote_key(key)}").content == f"content {index}".encode()
        assert bucket.info(key)["name"] == key
    listed = supabase_http.post(f"/object/list-v2/{supabase_bucket}", json={}).json()
    assert sorted(row["name"] for row in listed["objects"]) == sorted(keys)
    assert [row["name"] for row in bucket.list("dir with space")] == ["file (1)!.txt"]


def test_dot_segment_keys_are_objects_of_their_own(supabase_server: SupabaseServer, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    """As upstream: isValidKey (limits.ts) allows `.` segments; Node and Fastify leave them in the path, and
    find-my-way's sanitizeUrl runs decodeURI over it, so `%2E` reaches the route as `.` (both name one key).
    Nothing removes a dot segment: `c/./d.txt` is not `c/d.txt`."""
    host, port = supabase_server.url.removeprefix("http://").split(":")
    headers = {**service_headers(supabase_server), "Content-Type": "text/plain"}

    def exchange(method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
        # http.client sends the target as written (httpx would remove the dot segments first).
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, f"/storage/v1{target}", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    put(supabase_http, supabase_bucket, "c/d.txt", b"plain")
    sent = {"c/./d.txt": "c/./d.txt", "a/%2E%2E/b.txt": "a/../b.txt", "x/.": "x/.", "%2E": "."}
    for target, key in sent.items():
        status, body = exchange("POST", f"/object/{supabase_bucket}/{target}", key.encode())
        assert status == 200 and json.loads(body)["Key"] == f"{supabase_bucket}/{key}", body
    for target, key in {**sent, "c/%2E/d.txt": "c/./d.txt", "a/../b.txt": "a/../b.txt", "x/%2e": "x/.", ".": "."}.items():
        assert exchange("GET", f"/object/authenticated/{supabase_bucket}/{target}") == (200, key.encode()), target
        status, body = exchange("GET", f"/object/info/{supabase_bucket}/{target}")
        assert status == 200 and json.loads(body)["name"] == key, target
    assert exchange("GET", f"/object/authenticated/{supabase_bucket}/c/d.txt") == (200, b"plain")
    listed = supabase_http.post(f"/object/list-v2/{supabase_bucket}", json={}).json()
    assert sorted(row["name"] for row in listed["objects"]) == [".", "a/../b.txt", "c/./d.txt", "c/d.txt", "x/."]


# -- listing v1 -----------------------------------------------------------------------------------

TREE = ["a.txt", "B.txt", "c d.txt", "folder/x.txt", "folder/sub/y.txt", "Folder2/z.txt", "folder/sub/deeper/w.txt"]


@pytest.fixture
def tree_bucket(supabase_http: httpx.Client, supabase_bucket: str) -> str:
    for key in TREE:
        put(supabase_http, supabase_bucket, key, key.encode())
    return supabase_bucket


def test_list_v1_one_level(sb: Client, tree_bucket: str) -> None:
    bucket = sb.storage.from_(tree_bucket)
    root = bucket.list()
    # Case-insensitive name order, one level, folders as rows with only a name.
    assert [row["name"] for row in root] == ["a.txt", "B.txt", "c d.txt", "folder", "Folder2"]
    folder_row = root[3]
    assert folder_row == {"name": "folder", "id": None, "updated_at": None, "created_at": None, "last_accessed_at": None, "metadata": None}
    assert all(set(row) == V1_ROW_KEYS for row in root)
    assert root[0]["id"] is not None and root[0]["metadata"]["size"] == len(b"a.txt")
    assert [row["name"] for row in bucket.list("folder")] == ["sub", "x.txt"]
    assert [row["name"] for row in bucket.list("folder/")] == ["sub", "x.txt"]
    assert [row["name"] for row in bucket.list("folder/sub")] == ["deeper", "y.txt"]
    assert bucket.list("nothing-here") == []


def test_list_v1_limit_offset_search_sort(sb: Client, tree_bucket: str) -> None:
    bucket = sb.storage.from_(tree_bucket)
    assert [r["name"] for r in bucket.list("", {"limit": 2})] == ["a.txt", "B.txt"]
    assert [r["name"] for r in bucket.list("", {"limit": 2, "offset": 2})] == ["c d.txt", "folder"]
    assert [r["name"] for r in bucket.list("", {"limit": 2, "offset": 4})] == ["Folder2"]
    assert [r["name"] for r in bucket.list("", {"search": "fo"})] == ["folder", "Folder2"]
    assert [r["name"] for r in bucket.list("", {"search": "B"})] == ["B.txt"]
    assert [r["name"] for r in bucket.list("", {"sortBy": {"column": "name", "order": "desc"}})] == [
        "Folder2", "folder", "c d.txt", "B.txt", "a.txt"
    ]
    by_time = bucket.list("", {"sortBy": {"column": "created_at", "order": "desc"}})
    # storage.search: folders first (by name), then files by the column.
    assert [r["name"] for r in by_time] == ["Folder2", "folder", "c d.txt", "B.txt", "a.txt"]


def test_list_v1_pages_names_equal_but_for_case(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    for key in ("ab", "aB", "Ab", "AB/x"):
        put(supabase_http, supabase_bucket, key, b"x")
    bucket = sb.storage.from_(supabase_bucket)
    # Ordered by lower(name) ("ab" < "ab/x"), ties broken by the name's bytes.
    assert [r["name"] for r in bucket.list()] == ["Ab", "aB", "ab", "AB"]
    paged = [bucket.list("", {"limit": 1, "offset": offset})[0]["name"] for offset in range(4)]
    assert paged == ["Ab", "aB", "ab", "AB"]
    assert bucket.list("", {"limit": 1, "offset": 4}) == []


# -- listing v2 ----------------------------------------------------------------------------------


def test_list_v2_with_delimiter(supabase_http: httpx.Client, tree_bucket: str) -> None:
    body = supabase_http.post(f"/object/list-v2/{tree_bucket}", json={"with_delimiter": True}).json()
    assert body["hasNext"] is False and "nextCursor" not in body
    # Byte order (COLLATE "C"): upper case before lower case.
    assert [f["name"] for f in body["folders"]] == ["Folder2/", "folder/"]
    assert [f["key"] for f in body["folders"]] == ["Folder2", "folder"]
    assert body["folders"][0]["id"] is None
    assert [o["name"] for o in body["objects"]] == ["B.txt", "a.txt", "c d.txt"]
    assert set(body["objects"][0]) == {"key", "name", "id", "updated_at", "created_at", "last_accessed_at", "metadata"}
    nested = supabase_http.post(f"/object/list-v2/{tree_bucket}", json={"prefix": "folder/", "with_delimiter": True}).json()
    assert [f["name"] for f in nested["folders"]] == ["folder/sub/"]
    assert [(o["key"], o["name"]) for o in nested["objects"]] == [("x.txt", "folder/x.txt")]


def test_list_v2_recursive_with_client(sb: Client, tree_bucket: str) -> None:
    result = sb.storage.from_(tree_bucket).list_v2()
    assert result.folders == []
    assert [o.name for o in result.objects] == sorted(TREE)
    only_folder = sb.storage.from_(tree_bucket).list_v2({"prefix": "folder/"})
    assert [o.name for o in only_folder.objects] == ["folder/sub/deeper/w.txt", "folder/sub/y.txt", "folder/x.txt"]


def test_list_v2_cursor_paging(supabase_http: httpx.Client, tree_bucket: str) -> None:
    def walk(body: dict[str, Any]) -> list[str]:
        seen: list[str] = []
        cursor = None
        for _ in range(20):
            page = supabase_http.post(f"/object/list-v2/{tree_bucket}", json={**body, **({"cursor": cursor} if cursor else {})}).json()
            seen += [f["name"] for f in page["folders"]] + [o["name"] for o in page["objects"]]
            if not page["hasNext"]:
                return seen
            cursor = page["nextCursor"]
            assert decode_cursor(cursor).start_after == page["nextCursorKey"]
        raise AssertionError("paging did not end")

    assert walk({"limit": 2}) == sorted(TREE)
    assert walk({"limit": 1, "with_delimiter": True}) == ["B.txt", "Folder2/", "a.txt", "c d.txt", "folder/"]
    assert walk({"limit": 2, "sortBy": {"column": "name", "order": "desc"}}) == sorted(TREE, reverse=True)
    delimited_desc = {"limit": 1, "with_delimiter": True, "sortBy": {"column": "name", "order": "desc"}}
    assert walk(delimited_desc) == ["folder/", "c d.txt", "a.txt", "Folder2/", "B.txt"]
    first = supabase_http.post(f"/object/list-v2/{tree_bucket}", json={"limit": 2}).json()
    assert base64.b64decode(first["nextCursor"]).decode() == f"l:{sorted(TREE)[1]}\no:asc"
    by_time = walk({"limit": 3, "sortBy": {"column": "updated_at", "order": "asc"}})
    assert by_time == TREE  # uploaded in TREE order
    bad = supabase_http.post(f"/object/list-v2/{tree_bucket}", json={"cursor": base64.b64encode(b"junk").decode()})
    assert bad.json() == {
        "statusCode": "400", "code": "InvalidParameter", "error": "InvalidParameter", "message": "Invalid Parameter continuation token"
    }


def test_listing_more_than_a_thousand_objects(supabase_server: SupabaseServer, sb: Client, supabase_bucket: str) -> None:
    keys = [f"many/{i:05d}.dat" for i in range(1100)] + [f"many/sub{i:02d}/leaf.dat" for i in range(20)]
    headers = service_headers(supabase_server)
    with httpx.Client(base_url=supabase_server.storage_url, headers=headers, timeout=30,
                      limits=httpx.Limits(max_connections=16)) as client:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda key: put(client, supabase_bucket, key, key.encode()), keys))
        # v2, recursive, the maximum page of 1000.
        first = client.post(f"/object/list-v2/{supabase_bucket}", json={"prefix": "many/", "limit": 5000}).json()
        assert len(first["objects"]) == 1000 and first["hasNext"] is True
        second = client.post(
            f"/object/list-v2/{supabase_bucket}", json={"prefix": "many/", "limit": 5000, "cursor": first["nextCursor"]}
        ).json()
        assert second["hasNext"] is False
        assert [o["name"] for o in first["objects"] + second["objects"]] == sorted(keys)
        # v2 with delimiter: 1100 files and 20 folders at one level.
        level: list[str] = []
        cursor = None
        while True:
            body = {"prefix": "many/", "with_delimiter": True, "limit": 700, **({"cursor": cursor} if cursor else {})}
            page = client.post(f"/object/list-v2/{supabase_bucket}", json=body).json()
            level += [o["name"] for o in page["objects"]] + [f["name"] for f in page["folders"]]
            if not page["hasNext"]:
                break
            cursor = page["nextCursor"]
        assert sorted(level) == sorted(keys[:1100] + [f"many/sub{i:02d}/" for i in range(20)])
    # v1 through the official client: offset paging, one level.
    bucket = sb.storage.from_(supabase_bucket)
    names: list[str] = []
    while True:
        rows = bucket.list("many", {"limit": 1000, "offset": len(names)})
        names += [row["name"] for row in rows]
        if len(rows) < 1000:
            break
    assert names == [f"{i:05d}.dat" for i in range(1100)] + [f"sub{i:02d}" for i in range(20)]


def test_multipart_parser_survives_any_read_size() -> None:
    from migrate.stack.supabase_server.wire import BodyReader, MultipartReader, boundary_of

    payload = bytes(range(256)) * 64 + b"\r\n--not-the-boundary\r\n" + b"tail"
    request = httpx.Request(
        "POST", "http://x/", data={"cacheControl": "3600", "metadata": '{"k": "v"}'},
        files={"file": ("f.bin", payload, "application/x-demo")},
    )
    body = request.read()
    boundary = boundary_of(request.headers["content-type"])
    assert boundary

    class Trickle:
        """A stream that hands out at most `step` bytes per read, to split boundaries anywhere."""

        def __init__(self, data: bytes, step: int):
            self.data, self.step = data, step

        def read(self, size: int) -> bytes:
            piece, self.data = self.data[: min(size, self.step)], self.data[min(size, self.step) :]
            return piece

    for step in (1, 3, 7, 64, 1 << 20):
        reader = MultipartReader(BodyReader(Trickle(body, step), length=len(body), chunked=False), boundary)  # type: ignore[arg-type]
        seen: dict[str, Any] = {}
        for part in reader.parts():
            content = part.read_all(1 << 20)
            seen[part.name] = (part.filename, part.content_type, content)
        assert seen["cacheControl"] == (None, None, b"3600")
        assert seen["metadata"][2] == b'{"k": "v"}'
        assert seen["file"] == ("f.bin", "application/x-demo", payload), step


def test_multipart_upload_of_a_file_from_disk(sb: Client, supabase_http: httpx.Client, supabase_bucket: str, tmp_path: Path) -> None:
    data = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    sb.storage.from_(supabase_bucket).upload("from-disk.bin", source, {"content-type": "application/octet-stream"})
    fetched = supabase_http.get(f"/object/{supabase_bucket}/from-disk.bin")
    assert fetched.headers["etag"] == md5_etag(data) and fetched.content == data


def test_interrupted_upload_leaves_nothing_behind(
    supabase_server: SupabaseServer, supabase_http: httpx.Client, supabase_bucket: str
) -> None:
    put(supabase_http, supabase_bucket, "keep.txt", b"original")
    host, port = supabase_server.url.removeprefix("http://").split(":")
    for key in ("keep.txt", "never.txt"):
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            auth = service_headers(supabase_server)["Authorization"]
            raw.sendall(
                f"PUT /storage/v1/object/{supabase_bucket}/{key} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                "Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n".encode() + b"half" * 1000
            )
            raw.shutdown(socket.SHUT_WR)  # the body ends 996,000 bytes early
            # The server answers only once its handler has returned, so whatever it
            # would commit is committed by the time this answer (or EOF) arrives.
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert supabase_http.get(f"/object/{supabase_bucket}/keep.txt").content == b"original"
    assert supabase_http.get(f"/object/{supabase_bucket}/never.txt").json() == NOT_FOUND
    assert db_rows(supabase_server, "SELECT count(*) FROM storage.objects WHERE bucket_id = %s", supabase_bucket) == [(1,)]


# -- reading objects -------------------------------------------------------------------------------


@pytest.fixture
def object_1k(supabase_http: httpx.Client, supabase_bucket: str) -> tuple[str, str, bytes]:
    data = bytes(range(256)) * 4
    put(supabase_http, supabase_bucket, "dir/blob.bin", data, **{"Content-Type": "application/octet-stream", "Cache-Control": "max-age=30"})
    return supabase_bucket, "dir/blob.bin", data


def test_download_headers_and_ranges(supabase_http: httpx.Client, object_1k: tuple[str, str, bytes]) -> None:
    bucket, key, data = object_1k
    url = f"/object/{bucket}/{key}"
    full = supabase_http.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["etag"] == md5_etag(data)
    assert full.headers["content-length"] == "1024"
    assert full.headers["content-type"] == "application/octet-stream"
    assert full.headers["cache-control"] == "max-age=30"
    assert full.headers["accept-ranges"] == "bytes"
    assert "last-modified" in full.headers
    part = supabase_http.get(url, headers={"Range": "bytes=2-5"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, data[2:6], "bytes 2-5/1024")
    assert part.headers["content-length"] == "4"
    tail = supabase_http.get(url, headers={"Range": "bytes=-3"})
    assert (tail.status_code, tail.content, tail.headers["content-range"]) == (206, data[-3:], "bytes 1021-1023/1024")
    rest = supabase_http.get(url, headers={"Range": "BYTES=1000-"})
    assert (rest.status_code, rest.content) == (206, data[1000:])
    clamped = supabase_http.get(url, headers={"Range": "bytes=1020-99999"})
    assert (clamped.content, clamped.headers["content-range"]) == (data[1020:], "bytes 1020-1023/1024")
    beyond = supabase_http.get(url, headers={"Range": "bytes=1024-"})
    # The recorded upstream 416 has no Content-Range (step get.range.416).
    assert beyond.status_code == 416 and "content-range" not in beyond.headers
    assert beyond.json() == {"statusCode": "416", "code": "InvalidRange", "error": "invalid_range", "message": "invalid range provided"}
    ignored = supabase_http.get(url, headers={"Range": "bytes=5-1"})
    assert (ignored.status_code, ignored.content) == (200, data)


def test_conditional_and_download_disposition(supabase_http: httpx.Client, object_1k: tuple[str, str, bytes]) -> None:
    bucket, key, data = object_1k
    url = f"/object/authenticated/{bucket}/{key}"
    etag = md5_etag(data)
    not_modified = supabase_http.get(url, headers={"If-None-Match": etag})
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    # The recorded 304 keeps the entity headers (step get.inm).
    assert (not_modified.headers["etag"], not_modified.headers["content-type"]) == (etag, "application/octet-stream")
    assert not_modified.headers["accept-ranges"] == "bytes" and not_modified.headers["cache-control"] == "max-age=30"
    stale = supabase_http.get(url, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.headers["cache-control"] == "max-age=30, stale-while-revalidate=30"
    since = supabase_http.get(url, headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert since.status_code == 304
    named = supabase_http.get(url, params={"download": "my file.bin"})
    assert named.headers["content-disposition"] == "attachment; filename=my%20file.bin; filename*=UTF-8''my%20file.bin"  # no trailing ';' (supabase/storage#735)
    plain = supabase_http.get(url, params={"download": ""})
    assert plain.headers["content-disposition"] == "attachment;"


def test_missing_object_error(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    for path in (f"/object/{supabase_bucket}/nope", f"/object/authenticated/{supabase_bucket}/nope", f"/object/info/{supabase_bucket}/nope"):
        response = supabase_http.get(path)
        assert (response.status_code, response.json()) == (400, NOT_FOUND), path
    with pytest.raises(StorageApiError) as caught:
        sb.storage.from_(supabase_bucket).download("nope")
    assert (caught.value.code, caught.value.status, caught.value.message) == ("not_found", "404", "Object not found")
    assert sb.storage.from_(supabase_bucket).exists("nope") is False
    missing_bucket = supabase_http.get("/object/authenticated/no-such-bucket/x")
    assert missing_bucket.json() == NO_BUCKET
    unknown = supabase_http.get("/nowhere")
    assert unknown.status_code == 404 and unknown.json()["message"] == "Route GET:/nowhere not found"


# -- signed uploads (getSignedUploadURL.ts, uploadSignedObject.ts), unknown routes --------------------


def test_signed_upload_with_the_official_client(supabase_server: SupabaseServer, sb: Client, supabase_bucket: str) -> None:
    bucket = sb.storage.from_(supabase_bucket)
    signed = bucket.create_signed_upload_url("dir/up load.txt")
    path = urllib.parse.urlsplit(signed["signed_url"]).path
    assert path == f"/storage/v1/object/upload/sign/{supabase_bucket}/dir/up%20load.txt"
    claims = jwt.decode(signed["token"], supabase_server.jwt_secret, algorithms=["HS256"])
    assert (claims["url"], claims["upsert"], claims["exp"] - claims["iat"]) == (f"{supabase_bucket}/dir/up load.txt", False, 7200)
    uploaded = bucket.upload_to_signed_url("dir/up load.txt", signed["token"], b"signed bytes")
    assert uploaded.full_path == f"{supabase_bucket}/dir/up load.txt"
    assert bucket.download("dir/up load.txt") == b"signed bytes"
    info = bucket.info("dir/up load.txt")
    assert (info["size"], info["cache_control"]) == (12, "max-age=3600")
    # The token said no upsert: a second upload with it is a duplicate, and so is signing again.
    with pytest.raises(StorageApiError) as again:
        bucket.upload_to_signed_url("dir/up load.txt", signed["token"], b"other")
    assert (again.value.status, again.value.code) == ("409", "Duplicate")
    with pytest.raises(StorageApiError) as resign:
        bucket.create_signed_upload_url("dir/up load.txt")
    assert resign.value.code == "Duplicate"
    assert bucket.download("dir/up load.txt") == b"signed bytes"


def test_signed_upload_with_upsert_replaces(supabase_http: httpx.Client, bare_http: httpx.Client, supabase_bucket: str) -> None:
    put(supabase_http, supabase_bucket, "u.bin", b"old")
    signed = supabase_http.post(f"/object/upload/sign/{supabase_bucket}/u.bin", headers={"x-upsert": "true"})
    assert signed.status_code == 200 and set(signed.json()) == {"url", "token"}
    url = signed.json()["url"]
    assert url.startswith(f"/object/upload/sign/{supabase_bucket}/u.bin?token=")
    # Raw body, no API key at all: the token is the authority.
    response = bare_http.put(url, content=b"new bytes", headers={"Content-Type": "application/x-new"})
    assert (response.status_code, response.json()) == (200, {"Key": f"{supabase_bucket}/u.bin"})
    got = supabase_http.get(f"/object/{supabase_bucket}/u.bin")
    assert (got.content, got.headers["content-type"]) == (b"new bytes", "application/x-new")


def test_signed_upload_token_errors(sb: Client, supabase_http: httpx.Client, bare_http: httpx.Client, supabase_bucket: str, supabase_server: SupabaseServer) -> None:
    token = supabase_http.post(f"/object/upload/sign/{supabase_bucket}/a.txt").json()["token"]
    other = bare_http.put(f"/object/upload/sign/{supabase_bucket}/b.txt", params={"token": token}, content=b"x")
    assert (other.status_code, other.json()) == (
        400, {"statusCode": "400", "code": "InvalidSignature", "error": "InvalidSignature", "message": "Invalid signature"}
    )
    bad = bare_http.put(f"/object/upload/sign/{supabase_bucket}/a.txt", params={"token": "x.y.z"}, content=b"x")
    assert (bad.status_code, bad.json()["code"]) == (400, "InvalidJWT")
    missing = bare_http.put(f"/object/upload/sign/{supabase_bucket}/a.txt", content=b"x")
    assert missing.json() == {"statusCode": "400", "error": "Bad Request", "message": "querystring must have required property 'token'"}
    # A download token cannot upload, an upload token cannot download.
    put(supabase_http, supabase_bucket, "a.txt", b"kept")
    download_url = supabase_http.post(f"/object/sign/{supabase_bucket}/a.txt", json={"expiresIn": 60}).json()["signedURL"]
    download_token = urllib.parse.parse_qs(urllib.parse.urlsplit(download_url).query)["token"][0]
    refused = bare_http.put(f"/object/upload/sign/{supabase_bucket}/a.txt", params={"token": download_token}, content=b"x")
    assert refused.json()["code"] == "InvalidSignature"
    assert bare_http.get(f"/object/sign/{supabase_bucket}/a.txt", params={"token": token}).json()["code"] == "InvalidSignature"
    assert sb.storage.from_(supabase_bucket).download("a.txt") == b"kept"
    # Signing needs the right to insert, an existing bucket and a valid key.
    anon = {"apikey": supabase_server.publishable_key}
    assert bare_http.post(f"/object/upload/sign/{supabase_bucket}/n.txt", headers=anon).json() == RLS_DENIED
    assert supabase_http.post("/object/upload/sign/no-such-bucket/n.txt").json() == NO_BUCKET
    assert supabase_http.post(f"/object/upload/sign/{supabase_bucket}/%C3%BC.txt").json()["code"] == "InvalidKey"


def test_sign_routes_never_fall_through_to_a_bucket_named_upload(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    created = supabase_http.post("/bucket", json={"name": "upload"})
    assert created.status_code == 200, created.text
    try:
        signed = supabase_http.post(f"/object/upload/sign/{supabase_bucket}/p.txt")
        assert set(signed.json()) == {"url", "token"}
        put_without_token = supabase_http.put(f"/object/upload/sign/{supabase_bucket}/p.txt", content=b"body")
        assert put_without_token.status_code == 400
        assert supabase_http.post("/object/list/upload", json={"prefix": "sign"}).json() == []
        assert supabase_http.post(f"/object/list/{supabase_bucket}", json={"prefix": ""}).json() == []
    finally:
        supabase_http.post("/bucket/upload/empty", json={})
        supabase_http.request("DELETE", "/bucket/upload", json={})


def test_unknown_routes_answer_as_fastify_does(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    for method, target in (
        ("PATCH", f"/object/{supabase_bucket}/k.txt"),
        ("GET", f"/bucket/{supabase_bucket}/extra?x=1"),
        ("DELETE", "/bucket"),
        ("PUT", "/bucket?x=%20y"),
        ("POST", "/object"),
    ):
        response = supabase_http.request(method, target)
        assert (response.status_code, response.json()) == (
            404, {"message": f"Route {method}:{target} not found", "error": "Not Found", "statusCode": 404}
        ), target


def test_download_disposition_with_the_official_client(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    put(supabase_http, supabase_bucket, "r.pdf", b"%PDF", **{"Content-Type": "application/pdf"})
    bucket = sb.storage.from_(supabase_bucket)
    named = httpx.get(bucket.create_signed_url("r.pdf", 60, {"download": "report 1.pdf"})["signedURL"])
    # supabase/storage#735 (2025): no trailing ';'.
    assert named.headers["content-disposition"] == "attachment; filename=report%201.pdf; filename*=UTF-8''report%201.pdf"
    plain = httpx.get(bucket.create_signed_url("r.pdf", 60, {"download": True})["signedURL"])
    assert plain.headers["content-disposition"] == "attachment;"


def test_keep_alive_reuses_the_connection(supabase_server: SupabaseServer, object_1k: tuple[str, str, bytes]) -> None:
    bucket, key, data = object_1k
    host, port = supabase_server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = service_headers(supabase_server)
    try:
        conn.request("GET", f"/storage/v1/object/{bucket}/{key}", headers=headers)
        first = conn.getresponse()
        assert first.read() == data
        sock = conn.sock
        assert sock is not None
        conn.request("GET", f"/storage/v1/object/{bucket}/{key}", headers={**headers, "Range": "bytes=0-9"})
        second = conn.getresponse()
        assert second.status == 206 and second.read() == data[:10]
        conn.request("POST", f"/storage/v1/object/list/{bucket}", body=json.dumps({"prefix": "dir"}), headers=headers)
        assert json.loads(conn.getresponse().read())[0]["name"] == "blob.bin"
        assert conn.sock is sock  # one TCP connection served all three
    finally:
        conn.close()


def test_large_object_streams_both_ways(supabase_http: httpx.Client, supabase_bucket: str) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB
    total = 48

    def produce() -> Iterator[bytes]:
        for index in range(total):
            yield bytes([index]) + chunk[1:]

    expected = hashlib.md5()
    for piece in produce():
        expected.update(piece)
    response = supabase_http.post(f"/object/{supabase_bucket}/large.bin", content=produce())  # chunked upload
    assert response.status_code == 200, response.text
    digest = hashlib.md5()
    received = 0
    with supabase_http.stream("GET", f"/object/{supabase_bucket}/large.bin") as stream:
        assert stream.headers["content-length"] == str(total * len(chunk))
        assert stream.headers["etag"] == f'"{expected.hexdigest()}"'
        for piece in stream.iter_raw(1 << 20):
            digest.update(piece)
            received += len(piece)
    assert received == total * len(chunk) and digest.hexdigest() == expected.hexdigest()
    middle = supabase_http.get(f"/object/{supabase_bucket}/large.bin", headers={"Range": f"bytes={20 * len(chunk)}-{20 * len(chunk) + 9}"})
    assert middle.content == bytes([20]) + chunk[1:10]


# -- signed URLs ---------------------------------------------------------------------------------


def test_signed_urls(supabase_server: SupabaseServer, sb: Client, bare_http: httpx.Client, object_1k: tuple[str, str, bytes]) -> None:
    bucket_id, key, data = object_1k
    bucket = sb.storage.from_(bucket_id)
    signed = bucket.create_signed_url(key, 60)["signedURL"]
    assert signed is not None
    assert signed.startswith(f"{supabase_server.storage_url}/object/sign/{bucket_id}/{key}?token=")
    fetched = httpx.get(signed)  # no key: the token is the credential
    assert fetched.status_code == 200 and fetched.content == data
    assert "expires" in fetched.headers and "cache-control" not in fetched.headers
    token = urllib.parse.parse_qs(urllib.parse.urlparse(signed).query)["token"][0]
    claims = jwt.decode(token, supabase_server.jwt_secret, algorithms=["HS256"])
    assert claims["url"] == f"{bucket_id}/{key}" and claims["exp"] - claims["iat"] == 60
    ranged = httpx.get(signed, headers={"Range": "bytes=0-3"})
    assert (ranged.status_code, ranged.content) == (206, data[:4])

    batch = bucket.create_signed_urls([key, "missing.bin"], 60)
    assert batch[0]["error"] is None and httpx.get(str(batch[0]["signedURL"])).content == data
    assert batch[1] == {
        "error": "Either the object does not exist or you do not have access to it",
        "path": "missing.bin", "signedURL": None, "signedUrl": None,
    }

    path = f"/object/sign/{bucket_id}/{key}"
    expired = jwt.encode({"url": f"{bucket_id}/{key}", "iat": 1, "exp": 2}, supabase_server.jwt_secret, algorithm="HS256")
    assert bare_http.get(path, params={"token": expired}).json() == {
        "statusCode": "400", "code": "InvalidJWT", "error": "InvalidJWT", "message": '"exp" claim timestamp check failed'
    }
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert bare_http.get(path, params={"token": tampered}).json()["message"] == "signature verification failed"
    other = jwt.encode({"url": f"{bucket_id}/other", "exp": int(time.time()) + 60}, supabase_server.jwt_secret, algorithm="HS256")
    assert bare_http.get(path, params={"token": other}).json() == {
        "statusCode": "400", "code": "InvalidSignature", "error": "InvalidSignature", "message": "Invalid signature"
    }
    assert bare_http.get(path).status_code == 400
    missing = sb.storage.from_(bucket_id)
    with pytest.raises(StorageApiError) as caught:
        missing.create_signed_url("missing.bin", 60)
    assert caught.value.code == "not_found"


# -- auth --------------------------------------------------------------------------------------------


def test_missing_and_bad_jwts(supabase_server: SupabaseServer, bare_http: httpx.Client, supabase_bucket: str) -> None:
    def denied(message: str) -> dict[str, str]:
        return {"statusCode": "403", "code": "AccessDenied", "error": "Unauthorized", "message": message}

    # The real server verifies with jose (src/internal/auth/jwt-jose.ts): these are its messages.
    assert bare_http.get("/bucket").json() == denied("Invalid Compact JWS")
    wrong_secret = make_jwt("not-the-secret-at-all-not-the-secret", "service_role")
    assert bare_http.get("/bucket", headers={"Authorization": f"Bearer {wrong_secret}"}).json() == denied(
        "signature verification failed"
    )
    assert bare_http.get("/bucket", headers={"Authorization": "Bearer not.a.jwt"}).json() == denied(
        "JWS Protected Header is invalid"
    )
    expired = make_jwt(supabase_server.jwt_secret, "service_role", expires_in=-10)
    response = bare_http.get("/bucket", headers={"Authorization": f"Bearer {expired}"})
    assert (response.status_code, response.json()) == (400, denied('"exp" claim timestamp check failed'))
    # The API gateway's behaviour: the `apikey` header alone is enough.
    only_apikey = bare_http.get(f"/bucket/{supabase_bucket}", headers={"apikey": supabase_server.service_key})
    assert only_apikey.json()["id"] == supabase_bucket


GATEWAY_NO_KEY = {"message": "No API key found in request", "hint": "No `apikey` request header or url param was found."}
GATEWAY_BAD_KEY = {"message": "Invalid API key", "hint": "Double check your Supabase `anon` or `service_role` API key."}


def test_new_api_keys_have_their_formats(supabase_server: SupabaseServer) -> None:
    assert supabase_server.secret_key.startswith("sb_secret_") and len(supabase_server.secret_key) > 30
    assert supabase_server.publishable_key.startswith("sb_publishable_")
    assert supabase_server.secret_key.count(".") == 0  # not a JWT
    assert "sb_secret_" not in repr(supabase_server.keys)


def test_secret_key_in_apikey_is_the_service_role(
    supabase_server: SupabaseServer, bare_http: httpx.Client, supabase_bucket: str
) -> None:
    secret = {"apikey": supabase_server.secret_key}
    assert bare_http.get(f"/bucket/{supabase_bucket}", headers=secret).json()["id"] == supabase_bucket
    assert supabase_bucket in {b["id"] for b in bare_http.get("/bucket", headers=secret).json()}
    # The gateway also takes the key as the `apikey` URL parameter.
    assert bare_http.get(f"/bucket/{supabase_bucket}", params={"apikey": supabase_server.secret_key}).json()["id"] == supabase_bucket
    uploaded = bare_http.post(f"/object/{supabase_bucket}/k.txt", content=b"secret-key", headers=secret)
    assert uploaded.json()["Key"] == f"{supabase_bucket}/k.txt"
    assert bare_http.get(f"/object/authenticated/{supabase_bucket}/k.txt", headers=secret).content == b"secret-key"
    rows = bare_http.post(f"/object/list/{supabase_bucket}", json={"prefix": ""}, headers=secret).json()
    assert [row["name"] for row in rows] == ["k.txt"]


def test_secret_key_as_bearer_is_rejected_as_the_gateway_does(
    supabase_server: SupabaseServer, bare_http: httpx.Client, supabase_bucket: str
) -> None:
    key = supabase_server.secret_key
    bearer = {"Authorization": f"Bearer {key}"}
    # Equal to apikey: forwarded to Storage, which refuses a non-JWT bearer (api-keys.mdx, Known limitations).
    both = bare_http.get(f"/bucket/{supabase_bucket}", headers={**bearer, "apikey": key})
    assert (both.status_code, both.json()) == (
        400,
        {"statusCode": "403", "code": "AccessDenied", "error": "Unauthorized", "message": "Invalid Compact JWS"},
    )
    assert bare_http.post(f"/object/{supabase_bucket}/x.txt", content=b"x", headers={**bearer, "apikey": key}).status_code == 400
    # Bearer only: the gateway answers itself.
    alone = bare_http.get(f"/bucket/{supabase_bucket}", headers=bearer)
    assert (alone.status_code, alone.json()) == (401, GATEWAY_NO_KEY)
    # Nothing was written by the refused upload.
    listed = bare_http.post(f"/object/list/{supabase_bucket}", json={"prefix": ""}, headers={"apikey": key}).json()
    assert listed == []


def test_publishable_key_is_anon(
    supabase_server: SupabaseServer, bare_http: httpx.Client, supabase_http: httpx.Client,
    make_supabase_bucket: Callable[..., str],
) -> None:
    private, public = make_supabase_bucket(), make_supabase_bucket(public=True)
    put(supabase_http, private, "p.txt", b"private")
    put(supabase_http, public, "p.txt", b"public")
    anon = {"apikey": supabase_server.publishable_key}
    assert bare_http.get("/bucket", headers=anon).json() == []
    assert bare_http.get(f"/bucket/{private}", headers=anon).json() == NO_BUCKET
    assert bare_http.post(f"/object/{public}/new.txt", content=b"x", headers=anon).json() == RLS_DENIED
    assert bare_http.get(f"/object/authenticated/{private}/p.txt", headers=anon).json() == NOT_FOUND
    assert bare_http.get(f"/object/authenticated/{public}/p.txt", headers=anon).content == b"public"


def test_unknown_new_key_is_refused_by_the_gateway(supabase_server: SupabaseServer, bare_http: httpx.Client) -> None:
    for key in ("sb_secret_" + "x" * 32, "sb_publishable_nope", supabase_server.secret_key + "x"):
        response = bare_http.get("/bucket", headers={"apikey": key})
        assert (response.status_code, response.json()) == (401, GATEWAY_BAD_KEY)


def test_legacy_jwt_keys_keep_working(supabase_server: SupabaseServer, bare_http: httpx.Client, supabase_bucket: str) -> None:
    service, anon = supabase_server.service_key, supabase_server.anon_key
    for headers in ({"apikey": service}, {"apikey": service, "Authorization": f"Bearer {service}"}):
        assert bare_http.get(f"/bucket/{supabase_bucket}", headers=headers).json()["id"] == supabase_bucket
    # A user JWT as Bearer with the publishable key as apikey (what supabase-js sends for a signed-in user).
    user = make_jwt(supabase_server.jwt_secret, "authenticated")
    as_user = bare_http.get("/bucket", headers={"apikey": supabase_server.publishable_key, "Authorization": f"Bearer {user}"})
    assert as_user.status_code == 200 and as_user.json() == []
    assert bare_http.get("/bucket", headers={"apikey": anon, "Authorization": f"Bearer {anon}"}).json() == []


def test_anon_sees_nothing_private(
    supabase_server: SupabaseServer,
    sb_anon: Client, anon_http: httpx.Client, bare_http: httpx.Client, supabase_http: httpx.Client, supabase_bucket: str
) -> None:
    put(supabase_http, supabase_bucket, "secret.txt", b"private")
    assert sb_anon.storage.list_buckets() == []
    assert anon_http.get(f"/bucket/{supabase_bucket}").json() == NO_BUCKET
    assert anon_http.post("/bucket", json={"name": "anon-bucket"}).json() == RLS_DENIED
    assert anon_http.post(f"/object/{supabase_bucket}/x.txt", content=b"x").json() == RLS_DENIED
    assert sb_anon.storage.from_(supabase_bucket).list() == []
    assert anon_http.post(f"/object/list-v2/{supabase_bucket}", json={}).json() == {"hasNext": False, "folders": [], "objects": []}
    assert anon_http.get(f"/object/{supabase_bucket}/secret.txt").json() == NOT_FOUND
    assert anon_http.get(f"/object/authenticated/{supabase_bucket}/secret.txt").json() == NOT_FOUND
    assert bare_http.get(f"/object/{supabase_bucket}/secret.txt").json() == NO_BUCKET
    assert bare_http.get(f"/object/public/{supabase_bucket}/secret.txt").json() == NO_BUCKET
    assert anon_http.request("DELETE", f"/object/{supabase_bucket}", json={"prefixes": ["secret.txt"]}).json() == []
    authenticated = make_jwt(supabase_server.jwt_secret, "authenticated")
    as_user = supabase_http.get(f"/object/{supabase_bucket}/secret.txt", headers={"Authorization": f"Bearer {authenticated}"})
    assert as_user.json() == NOT_FOUND
    assert supabase_http.get(f"/object/{supabase_bucket}/secret.txt").content == b"private"  # still there


def test_anon_reads_public_buckets(
    sb_anon: Client, anon_http: httpx.Client, bare_http: httpx.Client, supabase_http: httpx.Client,
    make_supabase_bucket: Callable[..., str],
) -> None:
    public = make_supabase_bucket(public=True)
    put(supabase_http, public, "pic.png", b"picture", **{"Content-Type": "image/png"})
    url = sb_anon.storage.from_(public).get_public_url("pic.png")
    assert httpx.get(url).content == b"picture"
    assert bare_http.get(f"/object/{public}/pic.png").content == b"picture"
    assert sb_anon.storage.from_(public).download("pic.png") == b"picture"
    head = bare_http.head(f"/object/public/{public}/pic.png")
    assert head.status_code == 200 and head.headers["content-length"] == "7"
    assert bare_http.get(f"/object/info/public/{public}/pic.png").json()["size"] == 7
    assert anon_http.post(f"/object/{public}/new.png", content=b"x").json() == RLS_DENIED
    assert sb_anon.storage.from_(public).list() == []  # public means readable by URL, not listable


# -- remove, move, copy ----------------------------------------------------------------------------


def test_remove(sb: Client, supabase_http: httpx.Client, supabase_bucket: str) -> None:
    for key in ("r/1.txt", "r/2.txt", "r/3.txt"):
        put(supabase_http, supabase_bucket, key, b"x")
    removed = sb.storage.from_(supabase_bucket).remove(["r/1.txt", "r/2.txt", "r/missing.txt"])
    assert sorted(row["name"] for row in removed) == ["r/1.txt", "r/2.txt"]
    assert set(removed[0]) == {
        "name", "bucket_id", "owner", "owner_id", "version", "id", "updated_at", "created_at",
        "last_accessed_at", "metadata", "user_metadata",
    }
    assert [row["name"] for row in sb.storage.from_(supabase_bucket).list("r")] == ["3.txt"]
    assert supabase_http.request("DELETE", f"/object/{supabase_bucket}", json={"prefixes": []}).status_code == 400
    assert supabase_http.delete(f"/object/{supabase_bucket}/r/3.txt").json() == {"message": "Successfully deleted"}
    assert supabase_http.delete(f"/object/{supabase_bucket}/r/3.txt").json() == NOT_FOUND


def test_move_and_copy(sb: Client, supabase_http: httpx.Client, supabase_bucket: str, make_supabase_bucket: Callable[..., str]) -> None:
    bucket = sb.storage.from_(supabase_bucket)
    bucket.upload("src.txt", b"payload", {"content-type": "text/x-src", "metadata": {"m": "1"}})
    copied = bucket.copy("src.txt", "copy.txt")
    assert copied["Key"] == f"{supabase_bucket}/copy.txt" and copied["name"] == "copy.txt"
    assert bucket.download("copy.txt") == b"payload"
    info = bucket.info("copy.txt")
    assert (info["content_type"], info["metadata"], info["etag"]) == ("text/x-src", {"m": "1"}, md5_etag(b"payload"))
    again = supabase_http.post("/object/copy", json={"bucketId": supabase_bucket, "sourceKey": "src.txt", "destinationKey": "copy.txt"})
    assert again.json()["code"] == "KeyAlreadyExists"
    forced = supabase_http.post(
        "/object/copy", headers={"x-upsert": "true"},
        json={"bucketId": supabase_bucket, "sourceKey": "src.txt", "destinationKey": "copy.txt"},
    )
    assert forced.status_code == 200
    assert bucket.move("src.txt", "moved/dst.txt") == {"message": "Successfully moved"}
    assert bucket.download("moved/dst.txt") == b"payload"
    assert bucket.exists("src.txt") is False
    taken = supabase_http.post("/object/move", json={"bucketId": supabase_bucket, "sourceKey": "moved/dst.txt", "destinationKey": "copy.txt"})
    assert taken.json() == {"statusCode": "409", "code": "ResourceAlreadyExists", "error": "Duplicate", "message": "The resource already exists"}
    other = make_supabase_bucket()
    across = supabase_http.post(
        "/object/move", json={"bucketId": supabase_bucket, "sourceKey": "moved/dst.txt", "destinationBucket": other, "destinationKey": "x.txt"}
    )
    assert across.status_code == 200
    assert sb.storage.from_(other).download("x.txt") == b"payload"
    gone = supabase_http.post("/object/copy", json={"bucketId": supabase_bucket, "sourceKey": "nope", "destinationKey": "y"})
    assert gone.json() == NOT_FOUND


# -- fault injection -------------------------------------------------------------------------------


def test_fault_status_counts_and_clear(
    supabase_http: httpx.Client, supabase_faults: Callable[..., list[dict[str, Any]]], object_1k: tuple[str, str, bytes]
) -> None:
    bucket, key, data = object_1k
    rules = supabase_faults({"method": "GET", "path": f"/object/{bucket}/", "action": "status", "status": 503, "count": 2})
    assert rules[0]["count"] == 2
    for _ in range(2):
        failed = supabase_http.get(f"/object/{bucket}/{key}")
        assert failed.status_code == 503
        assert failed.json() == {
            "statusCode": "503", "code": "DatabaseConnectionLimit", "error": "DatabaseConnectionLimit",
            "message": "The database has reached its maximum number of connections. Please try again later.",
        }
    assert supabase_http.get(f"/object/{bucket}/{key}").content == data
    assert supabase_http.get("/_faults").json()["rules"][0]["count"] == 0
    supabase_faults({"path": "/object/", "action": "status", "status": 429, "count": None, "retry_after": 3})
    for _ in range(3):
        throttled = supabase_http.post(f"/object/list/{bucket}", json={"prefix": ""})
        assert throttled.status_code == 429 and throttled.headers["retry-after"] == "3"
        assert throttled.json() == {
            "statusCode": "429", "code": "SlowDown", "error": "too_many_connections",
            "message": "Too many connections issued to the database",
        }
    assert supabase_http.delete("/_faults").json() == {"rules": []}
    assert supabase_http.post(f"/object/list/{bucket}", json={"prefix": ""}).status_code == 200


def test_fault_drop_truncate_latency(
    supabase_server: SupabaseServer, supabase_http: httpx.Client,
    supabase_faults: Callable[..., list[dict[str, Any]]], object_1k: tuple[str, str, bytes],
) -> None:
    bucket, key, data = object_1k
    path = f"/object/{bucket}/{key}"
    supabase_faults({"method": "GET", "path": path, "action": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        supabase_http.get(path)
    assert supabase_http.get(path).content == data

    supabase_faults({"method": "GET", "path": path, "action": "truncate", "after_bytes": 100})
    host, port = supabase_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        auth = service_headers(supabase_server)["Authorization"]
        raw.sendall(f"GET /storage/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Length: 1024" in head and body == data[:100]
    supabase_faults({"method": "GET", "path": path, "action": "truncate", "after_bytes": 10})
    with pytest.raises(httpx.RemoteProtocolError):
        supabase_http.get(path)

    supabase_faults({"method": "GET", "path": path, "query": "download", "action": "latency", "delay_ms": 300})
    assert supabase_http.get(path).content == data  # no query: the rule does not fire...
    def latency_rules() -> list[dict[str, Any]]:
        return [rule for rule in supabase_http.get("/_faults").json()["rules"] if rule["action"] == "latency"]

    [rule] = latency_rules()
    assert rule["count"] == 1  # ...and is still armed
    started = time.monotonic()
    assert supabase_http.get(path, params={"download": ""}).content == data
    assert time.monotonic() - started >= 0.3  # a lower bound the rule itself implies
    assert latency_rules() in ([], [{**rule, "count": 0}])


def test_fault_admin_is_guarded_and_validated(anon_http: httpx.Client, supabase_http: httpx.Client) -> None:
    assert anon_http.post("/_faults", json={"rules": []}).json()["code"] == "AccessDenied"
    bad = supabase_http.post("/_faults", json={"rules": [{"action": "explode"}]})
    assert bad.status_code == 400 and "action" in bad.json()["message"]
    assert supabase_http.get("/_faults").json() == {"rules": []}


def test_faults_from_launch(make_database: Callable[[str], str], tmp_path: Path) -> None:
    rules = json.dumps({"rules": [{"method": "GET", "path": "/bucket", "action": "status", "status": 500, "count": 1}]})
    server = launch(database_url=make_database("faults"), data_dir=tmp_path / "data", jwt_secret="s" * 40, faults=rules)
    try:
        headers = service_headers(server)
        first = httpx.get(f"{server.storage_url}/bucket", headers=headers)
        assert first.status_code == 500
        assert first.json() == {"statusCode": "500", "code": "InternalError", "error": "InternalError", "message": "Internal server error"}
        assert httpx.get(f"{server.storage_url}/bucket", headers=headers).json() == []
    finally:
        server.stop()
    assert not server.process.alive()
