"""The Supabase user metadata <-> S3 header mapping (migrate/metadata.py): pure, no network."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from migrate.metadata import (
    comparable_metadata,
    decode_metadata,
    decode_value,
    encode_metadata,
    encode_value,
    metadata_problems,
)

# Values real apps put in Supabase's user_metadata (jsonb).
CORPUS: dict[str, object] = {
    "plain": "hello world",
    "city": "Zürich",
    "cjk": "東京都の写真",
    "emoji": "🎉 party 🐍",
    "flag": True,
    "off": False,
    "count": 3,
    "ratio": 2.5,
    "nothing": None,
    "tags": [1, "x", {"deep": "ü"}],
    "nested": {"a": 1, "b": [True, None]},
    "numeric-string": "3",
    "json-looking": "json:{\"a\": 1}",
    "word-looking": "=?UTF-8?B?WsO8cmljaA==?=",
    "inner-word": "see =?x?= here",
    "padded": "  spaced  ",
    "control": "line1\nline2\ttab",
    "empty": "",
    "mixed-word": "Zürich =?Q?",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_value_round_trips_as_ascii_header_text(name: str) -> None:
    value = CORPUS[name]
    encoded = encode_value(value)
    encoded.encode("ascii")  # header text: US-ASCII only
    assert encoded == encoded.strip() or encoded == ""
    assert all(32 <= ord(ch) < 127 for ch in encoded)
    decoded = decode_value(encoded)
    assert decoded == value and type(decoded) is type(value)


def test_plain_strings_travel_unchanged_and_unicode_as_rfc2047() -> None:
    assert encode_value("hello world") == "hello world"
    assert encode_value("Zürich") == "=?UTF-8?B?" + base64.b64encode("Zürich".encode()).decode() + "?="
    assert encode_value(True) == "json:true"
    assert encode_value([1, "x"]) == 'json:[1,"x"]'
    # A string "3" stays a string; the number 3 comes back a number.
    assert decode_value(encode_value("3")) == "3"
    assert decode_value(encode_value(3)) == 3


def test_what_s3_sends_back_decodes_too() -> None:
    """S3 decodes encoded words on write and re-encodes non-ASCII on read, possibly as several words."""
    text = "東京都の写真"
    raw = text.encode()
    split = f"=?UTF-8?B?{base64.b64encode(raw[:6]).decode()}?= =?UTF-8?B?{base64.b64encode(raw[6:]).decode()}?="
    assert decode_value(split) == text
    # A server that stores the encoded word verbatim (SeaweedFS) hands back the same text.
    assert decode_value(encode_value(text)) == text


def test_whole_metadata_round_trip_lowercases_names() -> None:
    source = {"City": "Zürich", "isPublic": True, "n": 7}
    headers = encode_metadata(source)
    assert set(headers) == {"city", "ispublic", "n"}
    assert decode_metadata(headers) == comparable_metadata(source) == {"city": "Zürich", "ispublic": True, "n": 7}


def test_problems_name_the_keys_s3_cannot_carry() -> None:
    assert metadata_problems(CORPUS) == []
    assert metadata_problems({"has space": "x"}) == [
        "user metadata key 'has space' is not a valid HTTP header name (letters, digits and !#$%&'*+.^_`|~- only)"
    ]
    assert metadata_problems({"ключ": "x"})[0].startswith("user metadata key 'ключ' is not a valid HTTP header name")
    assert metadata_problems({"Owner": "a", "owner": "b"}) == ["user metadata keys 'Owner' and 'owner' are the same key once S3 lowercases them"]
    too_big = metadata_problems({"blob": "x" * 2100})
    assert too_big == ["user metadata is 2104 bytes once encoded for S3, over S3's 2048-byte limit"]


# -- end to end: Supabase (real server) -> SeaweedFS through `migrate plan/run/verify` ------------


def test_json_user_metadata_migrates_and_verifies_decoded(
    supabase_server: Any, seaweed: Any, make_supabase_bucket: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The object that used to stop a run with a false SignatureDoesNotMatch, plus every JSON type, survives run and deep verify."""
    from tests.test_cli import Env

    world = Env(supabase_server, seaweed, make_supabase_bucket(), tmp_path, monkeypatch)
    world.write_plan(rules='\n  - name: all\n    match: "{file**}"\n    to: "copied/{file}"\n')
    sources = {
        "zurich.txt": {"city": "Zürich"},
        "corpus.bin": CORPUS,
        "bad-key.txt": {"has space": "x"},
    }
    for key, metadata in sources.items():
        response = world.http.post(
            f"{supabase_server.url}/storage/v1/object/{world.bucket}/{key}",
            content=key.encode(),
            headers={"Content-Type": "text/plain", "x-metadata": base64.b64encode(json.dumps(metadata).encode()).decode()},
        )
        assert response.status_code == 200, response.text

    rules = '\n  - name: all\n    match: "{file**}"\n    to: "copied/{file}"\n'
    # A key S3 cannot carry: plan reports it (exit 3), run refuses, until the user excludes it.
    assert world.migrate("plan") == 3
    manifest = next((tmp_path / "state").rglob("manifest.parquet"))
    import polars as pl

    actions = dict(pl.read_parquet(manifest).select("source_key", "action").iter_rows())
    assert actions == {"zurich.txt": "copy", "corpus.bin": "copy", "bad-key.txt": "invalid-metadata"}
    assert "1 objects cannot be migrated as they are" in capsys.readouterr().err
    assert world.migrate("run") == 2
    assert "1 planned objects cannot be migrated as they are (first: " in capsys.readouterr().err
    assert world.s3.list_objects_v2(Bucket=world.dest)["KeyCount"] == 0
    world.write_plan(rules=rules, extra="filters:\n  exclude: ['bad-key.txt']\n")
    assert world.migrate("plan") == 0
    assert world.migrate("run") == 0, capsys.readouterr()
    for key in ("zurich.txt", "corpus.bin"):
        raw = world.s3.head_object(Bucket=world.dest, Key=f"copied/{key}")["Metadata"]
        assert decode_metadata(raw) == comparable_metadata(sources[key]), key
    capsys.readouterr()
    assert world.migrate("verify", "--mode", "deep") == 0, capsys.readouterr()
    # verify compares decoded values: the boolean written in Python form ("True", what migrate used to write) is a difference.
    damaged = {**encode_metadata(CORPUS), "flag": "True"}
    head = world.s3.head_object(Bucket=world.dest, Key="copied/corpus.bin")
    world.s3.copy_object(
        Bucket=world.dest, Key="copied/corpus.bin", CopySource={"Bucket": world.dest, "Key": "copied/corpus.bin"},
        Metadata=damaged, MetadataDirective="REPLACE", ContentType=head["ContentType"], CacheControl=head["CacheControl"],
    )
    assert world.migrate("verify", "--mode", "fast") == 3
    assert "match 1, metadata-differs 1" in capsys.readouterr().out
    # Without the exclusion, verify counts the unwritable object as not migrated.
    world.write_plan(rules=rules)
    assert world.migrate("plan") == 3
    capsys.readouterr()
    assert world.migrate("verify", "--mode", "fast") == 3
    assert "not-migrated 1" in capsys.readouterr().out
