"""The URL map: every URL the application may hold for a migrated object -> where it lives now.

`write_url_map(plan)` reads the manifest (so renamed keys follow the plan's
rewrite rules) and writes, under `reports/<plan>/urls/`:

- `urls.parquet` and `urls.csv`: one row per (object, old URL form), the
  `URL_MAP_SCHEMA` columns;
- `urls.nginx.conf`: an nginx `map $uri $migrate_new_url {...}` include for
  the public objects (private ones need the redirect route, which checks
  credentials);
- `urls.json`: `{"<old path>": "<new URL>", ...}` for an app or a CDN edge
  function to load.

Old URL forms are the Supabase Storage download routes (github.com/supabase/storage,
src/http/routes/object/getPublicObject.ts, getObject.ts, getSignedObject.ts and
src/http/routes/render/*.ts), served under `/storage/v1`. A new URL is the CDN
base URL, else the public base URL, for objects of public buckets, and
`s3://bucket/key` for private ones (they are reached through presigned URLs).

Everything streams: the manifest is read a slice of `SLICE_OBJECTS` rows at a
time; each slice's map is appended to the CSV, JSON and nginx files and
written as one Parquet part, and the parts are joined into `urls.parquet` by
a polars scan-and-sink. (One lazy plan over the whole manifest, concatenating
the seven forms, made polars 2.1 hold the map in memory: 1.1 GiB at 2 million
objects.)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import polars as pl

from migrate.object_index import MIGRATED_ACTIONS
from migrate.rundir import RunDirectory, atomic_path

if TYPE_CHECKING:
    from migrate.plan import Plan

STORAGE_PREFIX = "/storage/v1"

# (form name, path prefix before "<bucket>/<key>", only for public buckets)
URL_FORMS: tuple[tuple[str, str], ...] = (
    ("public", "/object/public/"),
    ("authenticated", "/object/authenticated/"),
    ("object", "/object/"),
    ("signed", "/object/sign/"),
    ("render-public", "/render/image/public/"),
    ("render-authenticated", "/render/image/authenticated/"),
    ("render-signed", "/render/image/sign/"),
)

URL_MAP_SCHEMA: dict[str, pl.DataType] = {
    "source_bucket": pl.Utf8(),
    "source_key": pl.Utf8(),
    "dest_bucket": pl.Utf8(),
    "dest_key": pl.Utf8(),
    "visibility": pl.Utf8(),  # public | private
    "form": pl.Utf8(),  # one of URL_FORMS' names
    # The path as the old route receives it, decoded (what nginx's $uri holds).
    "old_path": pl.Utf8(),
    # The same path percent-encoded, as it appears in stored URLs.
    "old_url_path": pl.Utf8(),
    "new_url": pl.Utf8(),
}


@dataclass(frozen=True)
class UrlMapFiles:
    """What `write_url_map` wrote, and how many rows."""

    directory: Path
    parquet: Path
    csv: Path
    nginx: Path
    json: Path
    rows: int
    objects: int
    public_objects: int


def encode_key(key: str) -> str:
    """Percent-encode a key for a URL path, keeping `/` (RFC 3986 unreserved characters stay)."""
    return urllib.parse.quote(key, safe="/~")


def public_base_url(plan: "Plan") -> str:
    """Where public objects are read: the CDN, else the plan's public base URL, else the bucket's S3 URL."""
    cutover = plan.cutover
    if cutover.cdn_base_url:
        return cutover.cdn_base_url.rstrip("/")
    if cutover.public_base_url:
        return cutover.public_base_url.rstrip("/")
    destination = plan.destination
    if destination.endpoint_url:
        return f"{destination.endpoint_url.rstrip('/')}/{destination.bucket}"
    region = destination.region or "us-east-1"
    if "." in destination.bucket:
        # Virtual-hosted names with dots fail TLS on *.s3.amazonaws.com: use the path style.
        return f"https://s3.{region}.amazonaws.com/{destination.bucket}"
    return f"https://{destination.bucket}.s3.{region}.amazonaws.com"


def new_url(plan: "Plan", dest_bucket: str, dest_key: str, *, public: bool) -> str:
    """The URL an object is reached at after the cutover."""
    if public:
        return f"{public_base_url(plan)}/{encode_key(dest_key)}"
    return f"s3://{dest_bucket}/{dest_key}"


def old_paths(bucket: str, key: str) -> Iterator[tuple[str, str, str]]:
    """(form, decoded path, encoded path) of every Supabase URL form for `bucket/key`."""
    for form, prefix in URL_FORMS:
        yield form, f"{STORAGE_PREFIX}{prefix}{bucket}/{key}", f"{STORAGE_PREFIX}{prefix}{encode_key(bucket)}/{encode_key(key)}"


def _encoded(column: str) -> pl.Expr:
    return pl.col(column).map_batches(
        lambda series: series.map_elements(encode_key, return_dtype=pl.Utf8, skip_nulls=True),
        return_dtype=pl.Utf8,
        is_elementwise=True,
    )


def url_map_frame(plan: "Plan", manifest_rows: pl.LazyFrame) -> pl.LazyFrame:
    """The URL map of some manifest rows (all forms of each migrated object), as a lazy frame."""
    public_buckets = list(plan.cutover.public_buckets)
    base = public_base_url(plan)
    objects = (
        manifest_rows.filter(pl.col("action").is_in(list(MIGRATED_ACTIONS)))
        .select("source_bucket", "source_key", "dest_bucket", "dest_key")
        .with_columns(
            is_public=pl.col("source_bucket").is_in(public_buckets),
            encoded_bucket=_encoded("source_bucket"),
            encoded_key=_encoded("source_key"),
            encoded_dest=_encoded("dest_key"),
        )
        .with_columns(
            visibility=pl.when(pl.col("is_public")).then(pl.lit("public")).otherwise(pl.lit("private")),
            new_url=pl.when(pl.col("is_public"))
            .then(pl.lit(base + "/") + pl.col("encoded_dest"))
            .otherwise(pl.lit("s3://") + pl.col("dest_bucket") + pl.lit("/") + pl.col("dest_key")),
        )
    )
    per_form = [
        objects.with_columns(
            form=pl.lit(form),
            old_path=pl.lit(STORAGE_PREFIX + prefix) + pl.col("source_bucket") + pl.lit("/") + pl.col("source_key"),
            old_url_path=pl.lit(STORAGE_PREFIX + prefix) + pl.col("encoded_bucket") + pl.lit("/") + pl.col("encoded_key"),
        ).select(list(URL_MAP_SCHEMA))
        for form, prefix in URL_FORMS
    ]
    return pl.concat(per_form, how="vertical").cast(URL_MAP_SCHEMA)  # type: ignore[arg-type]


def _nginx_string(text: str) -> str:
    # nginx quoted strings: backslash escapes the quote and the backslash itself.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Manifest rows per slice: the map of one slice (7 rows per object) is what is held in memory.
SLICE_OBJECTS = 20_000


def _slices(path: Path, *, size: int = SLICE_OBJECTS) -> Iterator[pl.LazyFrame]:
    frame = pl.scan_parquet(path)
    total = frame.select(pl.len()).collect().item()
    for offset in range(0, total, size):
        yield frame.slice(offset, size)


def write_url_map(
    plan: "Plan",
    *,
    state_dir: str | Path | None = None,
    reports_dir: str | Path = "reports",
    out_dir: str | Path | None = None,
) -> UrlMapFiles:
    """Write the URL map of the plan's manifest (Parquet, CSV, nginx map, JSON); see the module docstring."""
    from migrate.errors import UserInputError

    run_dir = RunDirectory.for_plan(plan.name, state_dir=state_dir)
    if not run_dir.manifest.exists():
        raise UserInputError(f"{plan.path or plan.name}: no manifest yet; run `migrate plan {plan.path or plan.name}` first")
    directory = Path(out_dir) if out_dir else Path(reports_dir) / plan.name / "urls"
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / f"urls.{name}" for name in ("parquet", "csv", "json")}
    files["nginx"] = directory / "urls.nginx.conf"
    temporary = {name: atomic_path(path) for name, path in files.items()}
    parts = Path(tempfile.mkdtemp(dir=directory, prefix=".urls-parts-"))
    try:
        rows = objects = public_rows = 0
        with (
            temporary["nginx"].open("w", encoding="utf-8") as nginx,
            temporary["json"].open("w", encoding="utf-8") as out,
            temporary["csv"].open("w", encoding="utf-8", newline="") as csv,
        ):
            nginx.write(
                f"# migrate urls {plan.name}: old Supabase public object paths -> new URLs.\n"
                "# include inside http {}, then in the server: if ($migrate_new_url) { return 301 $migrate_new_url; }\n"
                "map $uri $migrate_new_url {\n    default \"\";\n"
            )
            out.write("{")
            first = True
            for index, manifest_rows in enumerate(_slices(run_dir.manifest)):
                batch = url_map_frame(plan, manifest_rows).collect()
                if index == 0 or batch.height:
                    batch.write_parquet(parts / f"part-{index:06d}.parquet")
                    batch.write_csv(csv, include_header=index == 0)
                rows += batch.height
                objects += batch.height // len(URL_FORMS)
                for old_path, url, visibility in batch.select("old_path", "new_url", "visibility").iter_rows():
                    out.write(("" if first else ",") + "\n" + json.dumps(old_path, ensure_ascii=False) + ": " + json.dumps(url, ensure_ascii=False))
                    first = False
                    if visibility == "public":
                        public_rows += 1
                        nginx.write(f"    {_nginx_string(old_path)} {_nginx_string(url)};\n")
            nginx.write("}\n")
            out.write("\n}\n")
        # One Parquet file from the slices' parts (a plain scan-and-sink, which polars streams).
        pl.scan_parquet(parts / "*.parquet").sink_parquet(temporary["parquet"], row_group_size=100_000)
        for name, path in files.items():
            temporary[name].replace(path)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    return UrlMapFiles(
        directory=directory,
        parquet=files["parquet"],
        csv=files["csv"],
        nginx=files["nginx"],
        json=files["json"],
        rows=rows,
        objects=objects,
        public_objects=public_rows // len(URL_FORMS),
    )
