"""Presigned GET URLs for one migrated object, asked for by its old bucket/key."""

from __future__ import annotations

import json
import urllib.parse

import httpx
import pytest

from migrate.cli import main
from migrate.presign import presign_source_object
from tests.fixtures_cutover import PRIVATE_OBJECTS, PUBLIC_OBJECTS, CutoverWorld


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_presign_by_old_key_opens_the_renamed_object(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world = cutover_world
    code = main(["presign", str(world.plan_path), f"{world.public_bucket}/users/u1/avatar.png", "--state-dir", str(world.state_dir), "--expires", "90s", "--json"])
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["destination"] == f"s3://{world.dest}/avatars/u1/avatar.png"
    assert answer["expires_in"] == 90
    query = _query(answer["url"])
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "90"
    got = httpx.get(answer["url"])
    assert got.status_code == 200 and got.content == PUBLIC_OBJECTS["users/u1/avatar.png"]
    # A tampered URL does not open anything: the signature covers the key.
    tampered = answer["url"].replace("avatar.png", "other.png")
    assert httpx.get(tampered).status_code == 403


def test_library_call_defaults_to_the_plans_expiry_and_keeps_content_disposition(cutover_world: CutoverWorld) -> None:
    world = cutover_world
    signed = presign_source_object(world.plan(), world.private_bucket, "reports/q1.pdf", state_dir=world.state_dir, content_disposition="attachment; filename=q1.pdf")
    assert signed.expires_in == 600 and _query(signed.url)["X-Amz-Expires"] == "600"
    assert "X-Amz-Signature" not in repr(signed)
    got = httpx.get(signed.url)
    assert got.content == PRIVATE_OBJECTS["reports/q1.pdf"]
    assert got.headers["content-disposition"] == "attachment; filename=q1.pdf"


def test_unknown_object_and_bad_expiry_are_one_line_exit_2(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world = cutover_world
    base = ["presign", str(world.plan_path), "--state-dir", str(world.state_dir)]
    assert main([*base, f"{world.private_bucket}/reports/nope.pdf"]) == 2
    err = capsys.readouterr().err
    assert "reports/nope.pdf: not a migrated object" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "reports/q1.pdf", "--bucket", world.private_bucket, "--expires", "8d"]) == 2
    assert "7 days" in capsys.readouterr().err
    assert main([*base, "no-slash"]) == 2
    assert "BUCKET/KEY" in capsys.readouterr().err
    assert main([*base, "reports/q1.pdf", "--bucket", world.private_bucket, "-q"]) == 0
    assert capsys.readouterr().out == ""
