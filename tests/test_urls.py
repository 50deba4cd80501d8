"""The URL map: every old Supabase URL form of every migrated object -> its new URL, renamed keys included."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import httpx
import polars as pl
import pytest

from migrate.cli import main
from migrate.urls import URL_FORMS, URL_MAP_SCHEMA
from tests.fixtures_cutover import PRIVATE_OBJECTS, PUBLIC_OBJECTS, CutoverWorld

FORM_PREFIXES = {
    "public": "/storage/v1/object/public/",
    "authenticated": "/storage/v1/object/authenticated/",
    "object": "/storage/v1/object/",
    "signed": "/storage/v1/object/sign/",
    "render-public": "/storage/v1/render/image/public/",
    "render-authenticated": "/storage/v1/render/image/authenticated/",
    "render-signed": "/storage/v1/render/image/sign/",
}


def _urls(world: CutoverWorld, *extra: str) -> tuple[int, Path]:
    out = world.tmp / "urlmap"
    code = main(["urls", str(world.plan_path), "--state-dir", str(world.state_dir), "--out", str(out), *extra])
    return code, out


def test_every_form_of_every_object_maps_to_its_new_url(cutover_world: CutoverWorld, capsys: pytest.CaptureFixture[str]) -> None:
    world = cutover_world
    code, out = _urls(world, "--json")
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    objects = {**{(world.public_bucket, k): v for k, v in PUBLIC_OBJECTS.items()}, **{(world.private_bucket, k): v for k, v in PRIVATE_OBJECTS.items()}}
    assert summary["objects"] == len(objects) and summary["public_objects"] == len(PUBLIC_OBJECTS)
    table = pl.read_parquet(out / "urls.parquet")
    assert dict(table.schema) == URL_MAP_SCHEMA
    assert table.height == len(objects) * len(URL_FORMS) == summary["rows"]
    base = f"{world.seaweed.endpoint_url}/{world.dest}"
    for (bucket, key) in objects:
        rows = table.filter((pl.col("source_bucket") == bucket) & (pl.col("source_key") == key))
        assert sorted(rows["form"]) == sorted(FORM_PREFIXES)
        dest_key = world.dest_key(bucket, key)
        for row in rows.iter_rows(named=True):
            assert row["old_path"] == f"{FORM_PREFIXES[row['form']]}{bucket}/{key}"
            assert urllib.parse.unquote(row["old_url_path"]) == row["old_path"]
            assert row["dest_key"] == dest_key
            if bucket == world.public_bucket:
                assert row["new_url"] == f"{base}/{urllib.parse.quote(dest_key)}" and row["visibility"] == "public"
            else:
                assert row["new_url"] == f"s3://{world.dest}/{dest_key}" and row["visibility"] == "private"
    # Renamed keys follow the rule: users/u1/avatar.png lives at avatars/u1/avatar.png.
    assert set(table.filter(pl.col("source_bucket") == world.public_bucket)["dest_key"]) == {"avatars/u1/avatar.png", "avatars/u2/a b (1).txt"}
    # The CSV holds the same rows; the JSON maps every old path.
    assert pl.read_csv(out / "urls.csv").height == table.height
    mapping = json.loads((out / "urls.json").read_text())
    assert len(mapping) == table.height
    assert mapping[f"/storage/v1/object/public/{world.public_bucket}/users/u2/a b (1).txt"] == f"{base}/avatars/u2/a%20b%20%281%29.txt"
    # The public URL in the map really serves the object's bytes (anonymous GET).
    assert httpx.get(mapping[f"/storage/v1/object/public/{world.public_bucket}/users/u1/avatar.png"]).content == PUBLIC_OBJECTS["users/u1/avatar.png"]


def test_nginx_map_lists_public_objects_only_quoted(cutover_world: CutoverWorld) -> None:
    world = cutover_world
    code, out = _urls(world, "-q")
    assert code == 0
    text = (out / "urls.nginx.conf").read_text()
    assert text.count("map $uri $migrate_new_url {") == 1 and text.rstrip().endswith("}")
    entries = [line.strip() for line in text.splitlines() if line.startswith('    "')]
    assert len(entries) == len(PUBLIC_OBJECTS) * len(URL_FORMS)
    assert f'    "/storage/v1/object/public/{world.public_bucket}/users/u2/a b (1).txt" "{world.seaweed.endpoint_url}/{world.dest}/avatars/u2/a%20b%20%281%29.txt";' in text
    assert world.private_bucket not in text


def test_cdn_base_url_wins_and_urls_need_a_manifest(cutover_world: CutoverWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = cutover_world
    world.write_plan("")
    text = world.plan_path.read_text().replace("  presign_expires: 10m", "  presign_expires: 10m\n  cdn_base_url: https://d111111abcdef8.cloudfront.net/")
    world.plan_path.write_text(text)
    code, out = _urls(world)
    assert code == 0
    table = pl.read_parquet(out / "urls.parquet").filter(pl.col("visibility") == "public")
    assert set(table["new_url"]) == {"https://d111111abcdef8.cloudfront.net/avatars/u1/avatar.png", "https://d111111abcdef8.cloudfront.net/avatars/u2/a%20b%20%281%29.txt"}
    capsys.readouterr()
    assert main(["urls", str(world.plan_path), "--state-dir", str(tmp_path / "empty")]) == 2
    assert "run `migrate plan" in capsys.readouterr().err
