"""The local filesystem store: the store conformance checks (list pages, head, ranges, atomic writes,
multipart, conditional writes, delete), the key-to-path mapping's safety, and `migrate run` into a folder."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from migrate.errors import BucketNotFound, IntegrityError, ObjectError, ObjectNotFound
from migrate.stores import local as local_module
from migrate.stores.local import LocalStore, UnsafeKey, key_to_relpath, relpath_to_key
from migrate.stores.s3 import ConditionalWriteFailed, UploadGone

ARGS: dict[str, Any] = {"content_type": "text/plain", "cache_control": "max-age=60", "content_disposition": None,
                        "metadata": {"origin": "test"}, "storage_class": None, "sse": None, "kms_key_id": None}

# Keys Supabase accepts (limits.ts isValidKey: anything but most control characters) that are hostile to paths.
HOSTILE_KEYS = [
    "../escape", "a/../../b", "/abs/path", "./dot", "a/./b", "..", ".", ".migrate-store/meta/x", ".hidden",
    "a//b", "trailing/", "with\ttab", "new\nline", "per%cent", "%2E%2E/x", "%00", "back\\slash", "ünïcødé/文件.txt",
    "sp ace/ and ? * : < > | \" '", "a" * 200,
]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data).digest()


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_every_supabase_key_maps_below_the_root_and_back(store: LocalStore, tmp_path: Path, key: str) -> None:
    relpath = key_to_relpath(key)
    assert relpath_to_key(relpath) == key
    path = store.path_of("bkt", key)
    assert os.path.commonpath([path, tmp_path / "bkt"]) == str(tmp_path / "bkt")
    assert not any(segment in (".", "..") or segment.startswith(".") for segment in relpath.split("/"))
    body = key.encode()
    store.put_object("bkt", key, body, content_md5=_md5(body), **ARGS)
    _, chunks = store.open("bkt", key)
    assert b"".join(chunks) == body
    listed = [info.key for page in store.iter_objects("bkt") for info in page]
    assert listed == [key]
    # Nothing was written outside the root.
    assert not (tmp_path.parent / "escape").exists() and not Path("/abs/path").exists()


def test_nul_and_overlong_segments_are_refused(store: LocalStore) -> None:
    with pytest.raises(UnsafeKey, match="NUL"):
        store.put_object("bkt", "a\x00b", b"x", content_md5=_md5(b"x"), **ARGS)
    with pytest.raises(UnsafeKey, match="255 bytes"):
        store.put_object("bkt", "x" * 256, b"x", content_md5=_md5(b"x"), **ARGS)
    with pytest.raises(UnsafeKey):
        store.put_object("../up", "k", b"x", content_md5=_md5(b"x"), **ARGS)


def test_head_reports_metadata_size_etag_and_sha256(store: LocalStore) -> None:
    body = b"hello world"
    etag = store.put_object("bkt", "docs/a.txt", body, content_md5=_md5(body), **ARGS)
    info = store.head("bkt", "docs/a.txt")
    assert info is not None
    assert (info.size, info.etag, etag) == (len(body), hashlib.md5(body).hexdigest(), hashlib.md5(body).hexdigest())
    assert (info.content_type, info.cache_control, info.user_metadata) == ("text/plain", "max-age=60", {"origin": "test"})
    assert info.checksums["sha256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert store.head("bkt", "docs/missing") is None


def test_ranged_reads(store: LocalStore) -> None:
    body = bytes(range(256)) * 10
    store.put_object("bkt", "r", body, content_md5=_md5(body), **ARGS)
    for offset, length in ((0, None), (5, 10), (2550, None), (100, 0), (2500, 500)):
        info, chunks = store.open("bkt", "r", offset=offset, length=length)
        expected = body[offset:] if length is None else body[offset : offset + length]
        assert b"".join(chunks) == expected
        if length != 0:  # a zero-length read answers the object's metadata (SourceStore.empty_read)
            assert info.size == len(expected)
    with pytest.raises(ObjectNotFound):
        store.open("bkt", "nope")


def test_listing_pages_sorted_by_utf8_bytes_and_prefix(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "LIST_PAGE", 3)
    keys = ["b/1", "a", "a/x/1", "a/x/2", "é", "z", "a/y", "ab"]
    for key in keys:
        if key == "a":
            continue  # "a" and "a/..." cannot both be files; see the next test
        store.put_object("bkt", key, b"k", content_md5=_md5(b"k"), **ARGS)
    pages = list(store.iter_objects("bkt"))
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [info.key for page in pages for info in page]
    assert listed == sorted([k for k in keys if k != "a"], key=lambda k: k.encode())
    assert [i.key for p in store.iter_objects("bkt", "a/x/") for i in p] == ["a/x/1", "a/x/2"]
    assert [i.key for p in store.iter_objects("bkt", "a") for i in p] == ["a/x/1", "a/x/2", "a/y", "ab"]
    assert store.list_buckets() == ["bkt"]


def test_object_and_folder_of_the_same_name_fail_clearly(store: LocalStore) -> None:
    store.put_object("bkt", "a", b"1", content_md5=_md5(b"1"), **ARGS)
    with pytest.raises(ObjectError, match="both 'a' and 'a/b'"):
        store.put_object("bkt", "a/b", b"2", content_md5=_md5(b"2"), **ARGS)
    store.put_object("bkt", "c/d", b"3", content_md5=_md5(b"3"), **ARGS)
    with pytest.raises(ObjectError, match="both 'a' and 'a/b'"):
        store.put_object("bkt", "c", b"4", content_md5=_md5(b"4"), **ARGS)


def test_writes_are_atomic_and_checked(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError):
        store.put_object("bkt", "k", b"abc", content_md5=_md5(b"abd"), **ARGS)
    assert store.head("bkt", "k") is None

    def broken() -> Any:
        yield b"half"
        raise OSError("disk went away")

    with pytest.raises(OSError):
        store.put_stream("bkt", "k", broken(), **{k: v for k, v in ARGS.items()})
    assert store.head("bkt", "k") is None
    assert list((tmp_path / ".migrate-store" / "tmp").iterdir()) == []


def test_conditional_writes_refuse_an_existing_key(store: LocalStore) -> None:
    assert store.supports_conditional_writes("bkt")
    store.put_object("bkt", "k", b"one", content_md5=_md5(b"one"), if_none_match=True, **ARGS)
    with pytest.raises(ConditionalWriteFailed):
        store.put_object("bkt", "k", b"two", content_md5=_md5(b"two"), if_none_match=True, **ARGS)
    assert b"".join(store.open("bkt", "k")[1]) == b"one"
    store.put_object("bkt", "k", b"two", content_md5=_md5(b"two"), **ARGS)
    assert b"".join(store.open("bkt", "k")[1]) == b"two"


def test_multipart_upload_list_parts_complete_and_abort(store: LocalStore) -> None:
    parts_data = [b"a" * 100, b"b" * 100, b"c" * 7]
    upload = store.create_multipart_upload("bkt", "big", **ARGS)
    assert store.list_multipart_uploads("bkt") == [("big", upload)]
    etags = [store.upload_part("bkt", "big", upload, n, data, content_md5=_md5(data)) for n, data in enumerate(parts_data, 1)]
    assert {n: p["size"] for n, p in store.list_parts("bkt", "big", upload).items()} == {1: 100, 2: 100, 3: 7}
    etag = store.complete_multipart_upload("bkt", "big", upload, [{"PartNumber": n, "ETag": f'"{e}"'} for n, e in enumerate(etags, 1)])
    expected = hashlib.md5(b"".join(_md5(d) for d in parts_data)).hexdigest() + "-3"
    assert etag == expected and store.head("bkt", "big").etag == expected  # type: ignore[union-attr]
    assert b"".join(store.open("bkt", "big")[1]) == b"".join(parts_data)
    assert store.head("bkt", "big").content_type == "text/plain"  # type: ignore[union-attr]
    assert store.list_multipart_uploads("bkt") == []
    other = store.create_multipart_upload("bkt", "gone", **ARGS)
    store.abort_multipart_upload("bkt", "gone", other)
    with pytest.raises(UploadGone):
        store.upload_part("bkt", "gone", other, 1, b"x", content_md5=_md5(b"x"))
    assert store.head("bkt", "gone") is None


def test_delete_and_missing_root(store: LocalStore, tmp_path: Path) -> None:
    store.put_object("bkt", "k", b"x", content_md5=_md5(b"x"), **ARGS)
    store.delete_object("bkt", "k")
    store.delete_object("bkt", "k")
    assert store.head("bkt", "k") is None
    gone = LocalStore(tmp_path / "not-there")
    with pytest.raises(BucketNotFound, match="does not exist"):
        gone.check_bucket("bkt")
    with pytest.raises(BucketNotFound):
        gone.put_object("bkt", "k", b"x", content_md5=_md5(b"x"), **ARGS)


def test_storage_class_or_encryption_on_a_folder_is_refused(store: LocalStore) -> None:
    with pytest.raises(ObjectError, match="storage_class"):
        store.put_object("bkt", "k", b"x", content_md5=_md5(b"x"), **{**ARGS, "storage_class": "GLACIER"})
    with pytest.raises(ObjectError, match="sse"):
        store.create_multipart_upload("bkt", "k", **{**ARGS, "sse": "aws:kms"})


def test_single_bucket_store_is_the_folder_itself(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, bucket="backup")
    store.put_object("backup", "bodies/ab/abc", b"x", content_md5=_md5(b"x"), **ARGS)
    assert (tmp_path / "bodies" / "ab" / "abc").read_bytes() == b"x"
    with pytest.raises(UnsafeKey):
        store.head("other", "k")


def test_migrate_run_into_a_local_destination(supabase_server: Any, supabase_bucket: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, supabase_http: Any) -> None:
    """`destination: {type: local}` works with the unchanged run stage (small and multipart objects), and verify passes."""
    from migrate.cli import main

    objects = {"docs/a.txt": b"alpha" * 10, "../sneaky": b"s", "big/blob.bin": os.urandom(11 * 1024 * 1024)}
    from migrate.stores.supabase import encode_key

    for key, body in objects.items():
        if key.startswith(".."):
            continue
        response = supabase_http.post(f"/object/{supabase_bucket}/{encode_key(key)}", content=body,
                                      headers={"Content-Type": "text/plain", "cache-control": "max-age=9"})
        assert response.status_code == 200, response.text
    del objects["../sneaky"]
    folder = tmp_path / "copy"
    folder.mkdir()
    monkeypatch.setenv("SUPABASE_URL", supabase_server.url)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_server.service_key)
    plan = tmp_path / "local.yaml"
    plan.write_text(f"""version: 1
source: {{type: supabase, url: "${{SUPABASE_URL}}", key: "${{SUPABASE_SERVICE_ROLE_KEY}}", buckets: [{supabase_bucket}]}}
destination: {{type: local, path: {folder}, bucket: mirror}}
transfer: {{part_size: 5MiB, multipart_threshold: 5MiB}}
""")
    state = ["--state-dir", str(tmp_path / "state"), "--reports-dir", str(tmp_path / "reports")]
    assert main(["run", str(plan), *state, "--no-progress"]) == 0
    for key, body in objects.items():
        assert (folder / "mirror" / key).read_bytes() == body
    info = LocalStore(folder).head("mirror", "docs/a.txt")
    assert info is not None and info.cache_control == "max-age=9" and info.content_type == "text/plain"
    assert main(["verify", str(plan), *state, "--no-progress"]) == 0


def test_a_local_destination_refuses_s3_only_settings(tmp_path: Path) -> None:
    from migrate.errors import PlanError
    from migrate.plan import parse_plan

    text = """version: 1
source: {type: s3, buckets: [a]}
destination: {type: local, path: /tmp/x, bucket: bkt, storage_class: GLACIER}
"""
    with pytest.raises(PlanError, match="storage_class"):
        parse_plan(text, source_name="p.yaml", environ={})
    plan = parse_plan(text.replace(", storage_class: GLACIER", ""), source_name="p.yaml", environ={})
    assert plan.destination is not None and (plan.destination.type, plan.destination.path) == ("local", "/tmp/x")




def test_an_s3_sources_carried_headers_are_kept_in_the_sidecar(seaweed: Any, make_s3_bucket: Any, tmp_path: Path) -> None:
    """`run` from S3 into a local destination keeps Content-Encoding, Content-Language and Expires beside the
    object (single write and multipart), `head` answers them, and `verify` holds the folder to them."""
    import gzip

    from migrate.journal import TransferJournal
    from migrate.records import ObjectRecord
    from migrate.stores.s3 import S3Location, S3Store
    from migrate.transfer import TransferOptions, transfer_objects
    from migrate.verify import VerifyOptions, verify_records

    part = 5 * 1024 * 1024
    source = make_s3_bucket()
    bodies = {"small.gz": gzip.compress(b"small " * 100, mtime=0), "big.gz": gzip.compress(os.urandom(part + 10), mtime=0)}
    carried = ("gzip", "en-GB", "Wed, 01 Dec 2094 16:00:00 GMT")
    client = seaweed.client()
    for key, body in bodies.items():
        client.put_object(Bucket=source, Key=key, Body=body, ContentEncoding=carried[0], ContentLanguage=carried[1], Expires=carried[2])
    s3 = S3Store(S3Location(endpoint_url=seaweed.endpoint_url, region=seaweed.region, access_key_id=seaweed.access_key, secret_access_key=seaweed.secret_key))
    folder = LocalStore(tmp_path / "copy")
    (tmp_path / "copy").mkdir()
    records = [ObjectRecord(source_bucket=source, source_key=key, size=len(body), dest_bucket="mirror", dest_key=key) for key, body in bodies.items()]
    with TransferJournal(tmp_path / "journal.sqlite") as journal:
        options = TransferOptions(concurrency=2, part_size=part, multipart_threshold=part, on_conflict="overwrite")
        result = transfer_objects(records, source=s3, destination=folder, journal=journal, options=options)  # type: ignore[arg-type]
        assert result.ok and result.copied == 2, result.failures
        for key, body in bodies.items():
            info = folder.head("mirror", key)
            assert info is not None and (info.content_encoding, info.content_language, info.expires) == carried, key
            assert b"".join(folder.open("mirror", key)[1]) == body
        frame = verify_records(records, source=s3, destination=folder, journal=journal, options=VerifyOptions(mode="fast"))  # type: ignore[arg-type]
    assert set(frame["status"]) == {"match"}
