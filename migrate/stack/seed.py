"""Seed a Supabase Storage server with data that looks like a real app's store.

Everything goes through the Storage REST API (as an app would upload it), and
everything is derived from `rng_seed`, so two seeded stacks hold the same
bytes under the same keys:

- `plugins` (private): a plugin registry. `plugins/<name>/<version>/package.tgz`
  (a real gzip'd tar), `plugin.json`, `README.md` for 10 plugins x 3 versions,
  `plugins/<name>/index.json` (short cache), plus the strays a real bucket
  collects (`.DS_Store`, an abandoned `*.tmp` upload, a top-level README).
- `avatars` (public): `<user-uuid>/avatar.png` for 50 users, real PNGs,
  `cache-control: max-age=3600`.
- `documents` (private): folders nested 8 deep
  (`team/<t>/projects/<p>/2024/q1/reports/<f>.pdf`), `.emptyFolderPlaceholder`
  files (zero bytes: how the dashboard creates an empty folder), keys with
  spaces and the punctuation Supabase allows, user metadata on invoices,
  reports and videos, `tmp/*.tmp` leftovers, and `large_objects` videos just
  over 100 MiB, streamed from a seeded PRNG and never held in memory.

Keys are limited to what Supabase Storage's `isValidKey` accepts:
`^(\\w|/|!|-|.|*|'|(|)| |&|$|@|=|;|:|+|,|?)*$` with JavaScript's ASCII-only
`\\w`. Non-ASCII keys (`naïve café.txt`) and `~` are rejected by the real
server (400 InvalidKey), so the seed has none.

Seeding is idempotent: buckets that exist are updated, objects are upserted
(`x-upsert: true`); a large object whose ETag already matches its content is
not sent again, so re-seeding a stack that was down is quick.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import struct
import tarfile
import threading
import urllib.parse
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx

from migrate.stack.process import StackError
from migrate.estimate import human_size

MiB = 1024 * 1024
#: Just over 100 MiB and not a multiple of any part size, so multipart paths,
#: the last short part and "large object" rules all get exercised.
LARGE_SIZE = 101 * MiB + 12_345
_STREAM_CHUNK = MiB

PLUGIN_NAMES = (
    "auth-saml",
    "image-resize",
    "markdown-preview",
    "pdf-export",
    "slack-notify",
    "csv-import",
    "geoip-lookup",
    "rate-limit",
    "audit-log",
    "dark-mode",
)
TEAMS = ("acme", "globex", "initech")
PROJECTS = ("apollo", "borealis", "cosmos", "delta", "echo", "fjord")
USER_COUNT = 50


@dataclass(frozen=True)
class SeedBucket:
    """A bucket to create: its id (also its name) and whether it is public."""

    id: str
    public: bool


@dataclass(frozen=True)
class SeedObject:
    """One object to upload. Small bodies are bytes; large ones a stream factory."""

    bucket: str
    key: str
    size: int
    content_type: str
    cache_control: str | None = None
    user_metadata: dict[str, Any] | None = None
    content: bytes | None = field(default=None, repr=False)
    stream: Callable[[], Iterator[bytes]] | None = field(default=None, repr=False)

    def chunks(self) -> Iterator[bytes]:
        if self.content is not None:
            yield self.content
        elif self.stream is not None:
            yield from self.stream()


@dataclass(frozen=True)
class SeedSummary:
    """What a seed run left on the server."""

    buckets: int
    objects: int
    bytes: int
    uploaded: int
    unchanged: int

    def line(self) -> str:
        """The one-line summary `migrate stack up` prints."""
        skipped = f", {self.unchanged} already there" if self.unchanged else ""
        return (
            f"seeded {self.buckets} buckets, {self.objects} objects, {human_size(self.bytes)}"
            f" ({self.uploaded} uploaded{skipped})"
        )




# --- content -----------------------------------------------------------------


def _png(rng: random.Random, width: int = 32, height: int = 32) -> bytes:
    """A small valid PNG (8-bit RGB): a colour gradient with some noise."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    red, green, blue = rng.randrange(256), rng.randrange(256), rng.randrange(256)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            noise = rng.randrange(16)
            rows += bytes(((red + x * 4 + noise) % 256, (green + y * 4) % 256, (blue + noise) % 256))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _pdf(rng: random.Random, title: str) -> bytes:
    """Bytes that start and end like a PDF, with filler in between."""
    lines = [f"% {title}".encode()]
    for number in range(rng.randint(20, 600)):
        lines.append(f"{number} 0 obj << /Length {rng.randint(10, 9999)} >> stream {rng.getrandbits(64):016x}".encode())
    return b"%PDF-1.7\n" + b"\n".join(lines) + b"\n%%EOF\n"


def _text(rng: random.Random, heading: str, paragraphs: int) -> bytes:
    words = ("plugin", "storage", "bucket", "release", "install", "config", "user", "upload", "fast", "secure")
    body = [f"# {heading}", ""]
    for _ in range(paragraphs):
        body.append(" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))).capitalize() + ".")
        body.append("")
    return "\n".join(body).encode()


def _tgz(files: dict[str, bytes]) -> bytes:
    """A gzip'd tar of `files`, byte-for-byte reproducible (fixed mtimes, no names in the gzip header)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_704_067_200  # 2024-01-01: a fixed date keeps the bytes stable
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _prng_stream(seed: str, size: int) -> Callable[[], Iterator[bytes]]:
    def stream() -> Iterator[bytes]:
        rng = random.Random(seed)
        remaining = size
        while remaining:
            step = min(_STREAM_CHUNK, remaining)
            yield rng.randbytes(step)
            remaining -= step

    return stream


def _plugins(rng: random.Random) -> list[SeedObject]:
    objects: list[SeedObject] = []

    def add(key: str, content: bytes, content_type: str, cache_control: str | None = None) -> None:
        objects.append(SeedObject("plugins", key, len(content), content_type, cache_control, content=content))

    for name in PLUGIN_NAMES:
        major, minor = rng.randint(0, 2), rng.randint(0, 5)
        versions = [f"{major}.{minor}.0", f"{major}.{minor + 1}.{rng.randint(0, 4)}", f"{major + 1}.0.0"]
        releases = []
        for version in versions:
            manifest: dict[str, Any] = {
                "name": name,
                "version": version,
                "description": f"{name.replace('-', ' ')} for the app",
                "license": "MIT",
                "entry": "dist/index.js",
            }
            readme = _text(rng, f"{name} {version}", rng.randint(2, 8))
            script = "\n".join(
                f'export const v{i} = "{rng.getrandbits(128):032x}";' for i in range(rng.randint(50, 3000))
            ).encode()
            package = _tgz(
                {
                    "package/plugin.json": json.dumps(manifest, indent=2).encode(),
                    "package/README.md": readme,
                    "package/dist/index.js": script,
                }
            )
            digest = hashlib.sha256(package).hexdigest()
            manifest["package"] = {"file": "package.tgz", "size": len(package), "sha256": digest}
            add(f"plugins/{name}/{version}/package.tgz", package, "application/gzip")
            add(f"plugins/{name}/{version}/plugin.json", json.dumps(manifest, indent=2).encode(), "application/json")
            add(f"plugins/{name}/{version}/README.md", readme, "text/markdown")
            releases.append({"version": version, "package": f"{version}/package.tgz", "size": len(package), "sha256": digest})
        index = {"name": name, "latest": versions[-1], "versions": releases}
        add(f"plugins/{name}/index.json", json.dumps(index, indent=2).encode(), "application/json", "max-age=60")
    # What real buckets collect: a Finder file, an upload that never finished, a stray note.
    add("plugins/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(rng.randbytes(64)), "application/octet-stream")
    add(f"plugins/{PLUGIN_NAMES[1]}/upload-{rng.getrandbits(32):08x}.tmp", rng.randbytes(512), "application/octet-stream")
    add("plugins/README.txt", b"Packages are published by CI; do not upload by hand.\n", "text/plain")
    return objects


def _avatars(rng: random.Random) -> list[SeedObject]:
    objects = []
    for _ in range(USER_COUNT):
        image = _png(rng)
        objects.append(SeedObject("avatars", f"{_uuid(rng)}/avatar.png", len(image), "image/png", "max-age=3600", content=image))
    return objects


def _documents(rng: random.Random, *, large_objects: int, large_size: int, rng_seed: int) -> list[SeedObject]:
    objects: list[SeedObject] = []

    def add(key: str, content: bytes, content_type: str, metadata: dict[str, Any] | None = None) -> None:
        objects.append(SeedObject("documents", key, len(content), content_type, None, metadata, content=content))

    placeholder = ".emptyFolderPlaceholder"
    for team_number, team in enumerate(TEAMS):
        for project in PROJECTS[team_number * 2 : team_number * 2 + 2]:
            base = f"team/{team}/projects/{project}/2024"
            for name in ("weekly-01", "weekly-02", "summary"):
                add(f"{base}/q1/reports/{name}.pdf", _pdf(rng, f"{team} {project} {name}"), "application/pdf")
            # An empty folder made in the dashboard: only its placeholder exists.
            add(f"{base}/q2/{placeholder}", b"", "application/octet-stream")
        add(f"team/{team}/archive/{placeholder}", b"", "application/octet-stream")
    add("team/acme/.DS_Store", b"\x00\x00\x00\x01Bud1" + rng.randbytes(32), "application/octet-stream")

    owner = _uuid(rng)
    for name in ("Q1 summary (final).pdf", "Q2 summary (draft) v2.pdf", "budget 2024 & forecast.pdf"):
        add(f"reports/{name}", _pdf(rng, name), "application/pdf", {"uploaded_by": owner, "department": "finance"})
    for number in range(1, 13):
        add(
            f"invoices/2024/INV-2024-{number:04d}.pdf",
            _pdf(rng, f"invoice {number}"),
            "application/pdf",
            {"customer": f"cus_{rng.getrandbits(40):010x}", "amount_cents": rng.randint(500, 500_000), "paid": number % 3 != 0},
        )
    for name in ("a+b=c;d,e@f$g!h'i*j.txt", "what? why.txt", "meeting 10:30 (notes).txt"):
        add(f"misc/{name}", _text(rng, name, 1), "text/plain")
    for _ in range(2):
        add(f"tmp/upload-{rng.getrandbits(48):012x}.tmp", rng.randbytes(rng.randint(1, 4096)), "application/octet-stream")

    for number in range(large_objects):
        key = f"videos/all-hands-2024-q{number + 1}.mp4"
        size = large_size + number * 65_537
        objects.append(
            SeedObject(
                "documents",
                key,
                size,
                "video/mp4",
                None,
                {"duration_s": 3_600 + number, "recorded_by": owner},
                stream=_prng_stream(f"{rng_seed}:{key}", size),
            )
        )
    return objects


def seed_plan(
    *, large_objects: int = 2, large_size: int = LARGE_SIZE, rng_seed: int = 42
) -> tuple[list[SeedBucket], list[SeedObject]]:
    """The buckets and objects a seed run uploads, derived from `rng_seed` alone (no I/O)."""
    rng = random.Random(rng_seed)
    buckets = [SeedBucket("plugins", public=False), SeedBucket("avatars", public=True), SeedBucket("documents", public=False)]
    objects = (
        _plugins(rng)
        + _avatars(rng)
        + _documents(rng, large_objects=large_objects, large_size=large_size, rng_seed=rng_seed)
    )
    return buckets, objects


# --- upload ------------------------------------------------------------------


class _StorageAPI:
    """The few Storage REST calls seeding needs, over one shared httpx client."""

    def __init__(self, supabase_url: str, service_key: str, *, workers: int):
        self.base = supabase_url.rstrip("/") + "/storage/v1"
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {service_key}", "apikey": service_key},
            timeout=httpx.Timeout(120.0, connect=5.0),
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )

    def close(self) -> None:
        self.client.close()

    def _fail(self, what: str, response: httpx.Response) -> StackError:
        try:
            message = response.json().get("message") or response.text[:200]
        except ValueError:
            message = response.text[:200]
        return StackError(f"seeding {what} failed: HTTP {response.status_code} {message}")

    def ensure_bucket(self, bucket: SeedBucket) -> None:
        response = self.client.post(f"{self.base}/bucket", json={"id": bucket.id, "name": bucket.id, "public": bucket.public})
        if response.is_success:
            return
        try:
            duplicate = str(response.json().get("statusCode")) == "409"
        except ValueError:
            duplicate = False
        if not duplicate:
            raise self._fail(f"bucket {bucket.id}", response)
        # Already there (a re-seed): make sure it is as public or private as the seed says.
        response = self.client.put(f"{self.base}/bucket/{bucket.id}", json={"public": bucket.public})
        if not response.is_success:
            raise self._fail(f"bucket {bucket.id}", response)

    def etag(self, obj: SeedObject) -> str | None:
        response = self.client.get(f"{self.base}/object/info/authenticated/{obj.bucket}/{_quote(obj.key)}")
        if response.status_code in (400, 404):
            return None
        if not response.is_success:
            raise self._fail(f"{obj.bucket}/{obj.key}", response)
        document = response.json()
        if document.get("size") != obj.size:
            return None
        return str(document.get("etag") or "").strip('"') or None

    def upload(self, obj: SeedObject) -> None:
        headers = {
            "Content-Type": obj.content_type,
            "Content-Length": str(obj.size),
            "x-upsert": "true",
        }
        if obj.cache_control:
            headers["cache-control"] = obj.cache_control
        if obj.user_metadata:
            headers["x-metadata"] = base64.b64encode(json.dumps(obj.user_metadata).encode()).decode()
        # An iterator body with a Content-Length: httpx streams it as is,
        # so a 100 MiB object never sits in memory.
        response = self.client.post(
            f"{self.base}/object/{obj.bucket}/{_quote(obj.key)}", content=obj.chunks(), headers=headers
        )
        if not response.is_success:
            raise self._fail(f"{obj.bucket}/{obj.key}", response)


def _quote(key: str) -> str:
    # Spaces, parentheses, `?` and the like must be escaped in the URL path;
    # the server decodes them back into the key.
    return urllib.parse.quote(key, safe="/")


def _md5_of(obj: SeedObject) -> str:
    digest = hashlib.md5()
    for chunk in obj.chunks():
        digest.update(chunk)
    return digest.hexdigest()


def seed(
    supabase_url: str,
    service_key: str,
    *,
    large_objects: int = 2,
    large_size: int = LARGE_SIZE,
    rng_seed: int = 42,
    workers: int = 8,
) -> SeedSummary:
    """Upload the seed data set through the Storage REST API; idempotent.

    `large_objects` objects of about `large_size` bytes (default: two just over
    100 MiB) are streamed; 0 makes a quick stack. Raises StackError naming the
    object on the first failed upload.
    """
    buckets, objects = seed_plan(large_objects=large_objects, large_size=large_size, rng_seed=rng_seed)
    api = _StorageAPI(supabase_url, service_key, workers=workers)
    lock = threading.Lock()
    counts = {"uploaded": 0, "unchanged": 0}

    def put(obj: SeedObject) -> None:
        # Large objects: skip the 100 MiB upload when the server already holds exactly these bytes.
        if obj.stream is not None:
            etag = api.etag(obj)
            if etag is not None and etag == _md5_of(obj):
                with lock:
                    counts["unchanged"] += 1
                return
        api.upload(obj)
        with lock:
            counts["uploaded"] += 1

    try:
        for bucket in buckets:
            api.ensure_bucket(bucket)
        # Large objects first: they take longest, the small ones fill in around them.
        ordered = sorted(objects, key=lambda o: o.stream is None)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seed") as pool:
            futures = [pool.submit(put, obj) for obj in ordered]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                # Stop at the first failure: nothing queued behind it starts.
                for future in futures:
                    future.cancel()
                raise
    except httpx.HTTPError as err:
        raise StackError(f"seeding failed: cannot reach Supabase Storage at {supabase_url} ({type(err).__name__})") from err
    finally:
        api.close()
    return SeedSummary(
        buckets=len(buckets),
        objects=len(objects),
        bytes=sum(obj.size for obj in objects),
        uploaded=counts["uploaded"],
        unchanged=counts["unchanged"],
    )
